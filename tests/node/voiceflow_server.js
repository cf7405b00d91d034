// A second, independent peer for the Voiceflow backend: the reference socket.io 4 server (Node),
// speaking enough of the Voiceflow runtime protocol (docs/PROTOCOLS.md) for a streamed turn with a
// choice and a follow-up turn on the same session.
//
//   node tests/node/voiceflow_server.js PORT     (0 picks a free port)
//
// Prints one JSON line {"port": N} once listening, then one {"event", "data"} line per event a client
// sends (the API key masked). Exits when its stdin closes, so it never outlives the test that started it.
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { Server } = require("socket.io");

const API_KEY = process.env.VOICEFLOW_API_KEY || "VF.DM.node-test-key";
const PROJECT_ID = process.env.VOICEFLOW_PROJECT_ID || "node-project";
const PATH = "/v4/interact/socket";

const sessions = new Map(); // sessionKey -> {userID, actions}

function report(event, data) {
  const masked = data && data.authorization ? { ...data, authorization: "***" } : data;
  process.stdout.write(JSON.stringify({ event, data: masked }) + "\n");
}

function reply(action, session) {
  if (action.type === "launch") {
    return [
      { type: "completion", payload: { state: "start" } },
      ...["Hello ", "from ", "Node!"].map((content) => ({ type: "completion", payload: { state: "content", content } })),
      { type: "completion", payload: { state: "end" } },
      {
        type: "choice",
        payload: {
          buttons: [
            { name: "Pricing", request: { type: "path-pricing", payload: { label: "Pricing" } } },
            { name: "Support", request: { type: "path-support", payload: { label: "Support" } } },
          ],
        },
      },
    ];
  }
  const said = action.type === "text" ? action.payload : (action.payload && action.payload.label) || action.type;
  return [{ type: "text", payload: { message: `You picked ${said} (action ${session.actions} of this session).` } }];
}

const server = http.createServer();
const io = new Server(server, { path: PATH, transports: ["websocket"] });

io.on("connection", (socket) => {
  let start = null;
  let session = null;
  let inFlight = false;

  socket.on("client.start", (data) => {
    report("client.start", data);
    if (!data || data.projectID !== PROJECT_ID || typeof data.userID !== "string") {
      socket.emit("error", { code: 400, error: "malformed client.start" });
      return;
    }
    if (data.authorization !== API_KEY) {
      socket.emit("error", { code: 401, error: "Unauthorized" });
      socket.disconnect(true);
      return;
    }
    start = data;
    const known = sessions.get(data.sessionKey);
    session = known && known.userID === data.userID ? known : null;
    socket.emit("client.started", { newSessionRequired: session === null });
  });

  socket.on("session.create", (data) => {
    report("session.create", data);
    if (!start) {
      socket.emit("error", { code: 400, error: "session.create before client.start" });
      return;
    }
    const key = crypto.randomBytes(24).toString("base64url");
    session = { userID: start.userID, actions: 0 };
    sessions.set(key, session);
    socket.emit("session.created", { sessionKey: key });
  });

  socket.on("action.send", async (data) => {
    report("action.send", data);
    const action = data && data.action;
    const messageID = crypto.randomUUID();
    if (!session || !action || typeof action.type !== "string" || inFlight) {
      socket.emit("action.status", { status: "rejected", messageID, reason: "no session, bad action or busy" });
      return;
    }
    inFlight = true;
    session.actions += 1;
    socket.emit("action.status", { status: "accepted", messageID });
    for (const trace of reply(action, session)) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      socket.emit("action.trace", { trace, messageID });
    }
    socket.emit("action.status", { status: "completed", messageID });
    inFlight = false;
  });
});

server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
