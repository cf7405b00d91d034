"""A loopback Convocore REST interact endpoint that answers like the real one, errors included.

`POST /v3/agents/{agent_id}/interact/{user_id}` checks the bearer secret (401), knows its agent (404)
and validates the body the way the real tRPC/zod schema does (400 with `{message, code, issues}`):
only `action`, `appendMessages`, `transcriptMetadata`, `variables` and `origin`, with enum checks.

Each `user_id` is one conversation. The fake remembers its turn count and its state (`ai-chatting`
until a reply or `transcriptMetadata.state` changes it), and refuses (400) an action that is neither
`text` nor `launch`, a button's raw `request` included, as the real endpoint does. While the state
is `requested_chat` or `human-chatting` the AI stays silent: the answer carries no bot messages.

The answer is `{platformName, success, message, chatState: {state}, actionMessages, turns, origin,
userID, agentID}`, where `turns` holds the user's own turn followed by the bot's. Without a script
the bot echoes the text, numbered by the conversation's turn count, so a test sees at once whether
the client continued the session; `launch` gets `GREETING`.

    async with FakeConvocoreRest(secret="s") as fake:
        fake.script(text_item("Hi"), choice_item("Yes", "No"))
        ... POST f"{fake.url}/agents/{fake.agent_id}/interact/{user_id}" ...
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.http import Drop, FakeHttpService, Hang

JSONDict = dict[str, Any]
GREETING = "Welcome! How can I help?"
STATES = frozenset({"requested_chat", "human-chatting", "ai-chatting", "ended_chat"})
SILENT_STATES = frozenset({"requested_chat", "human-chatting"})
ACTION_TYPES = frozenset({"text", "launch"})
ORIGINS = frozenset({"web-chat", "whatsapp", "discord", "gb-chat"})
BODY_KEYS = frozenset({"action", "appendMessages", "transcriptMetadata", "variables", "origin"})
METADATA_KEYS = frozenset(
    {
        "ID",
        "userID",
        "userName",
        "userEmail",
        "userImage",
        "userPhone",
        "userBrowser",
        "userProfilePic",
        "origin",
        "messagesNum",
        "interactionsNum",
        "ts",
        "tags",
        "convoTimeSeconds",
        "firstMessageTS",
        "lastMessageTS",
        "userPlatform",
        "state",
        "chatAssignedTo",
        "lastModified",
        "sessionsNum",
    }
)
TRPC_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    422: "UNPROCESSABLE_CONTENT",
    429: "TOO_MANY_REQUESTS",
}


def text_item(message: str) -> JSONDict:
    return {"type": "text", "payload": {"message": message}}


def choice_item(*labels: str) -> JSONDict:
    """Voiceflow-style buttons; their `request` cannot be sent back (only `text`/`launch` are accepted)."""
    buttons = [
        {"name": label, "request": {"type": f"path-{uuid.uuid4().hex[:8]}", "payload": {"label": label}}}
        for label in labels
    ]
    return {"type": "choice", "payload": {"buttons": buttons}}


def visual_item(image: str) -> JSONDict:
    return {"type": "visual", "payload": {"image": image, "visualType": "image"}}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: bot `items`, the conversation `state` after it, top-level `fields` to
    override, a `cut` (send half the body, then hang or drop), or a `raw` body sent as is."""

    items: tuple[JSONDict, ...] = ()
    state: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    cut: Hang | Drop | None = None
    raw: str | None = None


@dataclass(frozen=True)
class Seen:
    """A request the fake accepted."""

    user_id: str
    body: JSONDict
    headers: dict[str, str]


@dataclass
class Conversation:
    turns: int = 0
    state: str = "ai-chatting"


class FakeConvocoreRest(FakeHttpService):
    """Serve `{url}/agents/{agent_id}/interact/{user_id}`; inspect `requests` and `conversations`."""

    def __init__(self, *, secret: str = "cc-rest-secret", agent_id: str = "agent-1") -> None:
        super().__init__()
        self.secret = secret
        self.agent_id = agent_id
        self.requests: list[Seen] = []
        self.conversations: dict[str, Conversation] = {}
        self._scripts: deque[Reply] = deque()

    @property
    def url(self) -> str:
        return f"{self.base_url}/v3"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v3/agents/{agent_id}/interact/{user_id}", self._interact)]

    def error_body(self, status: int, message: str) -> Any:
        code = TRPC_CODES.get(status, "INTERNAL_SERVER_ERROR")
        return {"message": message, "code": code, "issues": []}

    def script(
        self,
        *items: JSONDict,
        state: str | None = None,
        fields: Mapping[str, Any] | None = None,
        cut: Hang | Drop | None = None,
    ) -> None:
        """Answer the next turn the AI replies to with `items` (see `Reply`)."""
        self._scripts.append(Reply(items, state, fields or {}, cut))

    def script_raw(self, text: str) -> None:
        """Answer the next turn the AI replies to with `text` as the body, as if the server broke."""
        self._scripts.append(Reply(raw=text))

    async def _interact(self, request: web.Request) -> web.StreamResponse:
        if injected := await self.injected(request):
            return injected
        if request.headers.get("Authorization") != f"Bearer {self.secret}":
            return self.error(401, "Invalid or missing API key")
        if request.match_info["agent_id"] != self.agent_id:
            return self.reject(404, "Agent not found")
        try:
            body = await request.json()
        except ValueError:
            return self.reject(400, "Invalid JSON body")
        user_id = request.match_info["user_id"]
        conversation = self.conversations.get(user_id, Conversation())
        problem = _problem(body)
        if problem:
            return self.reject(400, problem)
        self.conversations[user_id] = conversation
        self.requests.append(Seen(user_id, body, dict(request.headers)))
        conversation.turns += 1
        state = body.get("transcriptMetadata", {}).get("state")
        conversation.state = state or conversation.state
        reply = self._reply(body["action"], conversation)
        if reply.raw is not None:
            return web.Response(text=reply.raw, content_type="application/json")
        conversation.state = reply.state or conversation.state
        answer = self._answer(user_id, body, reply, conversation) | dict(reply.fields)
        if reply.cut is None:
            return web.json_response(answer)
        return await self._cut(request, json.dumps(answer).encode(), reply.cut)

    def _reply(self, action: JSONDict, conversation: Conversation) -> Reply:
        if conversation.state in SILENT_STATES:
            return Reply()
        if self._scripts:
            return self._scripts.popleft()
        if action["type"] == "launch":
            return Reply((text_item(GREETING),))
        return Reply((text_item(f"echo #{conversation.turns}: {action['payload']}"),))

    def _answer(self, user_id: str, body: JSONDict, reply: Reply, conversation: Conversation) -> JSONDict:
        now = int(time.time() * 1000)
        action = body["action"]
        said = text_item(action["payload"]) if action["type"] == "text" else action
        human = {"from": "human", "type": action["type"], "item": said, "ts": now}
        bot = [
            {"from": "bot", "type": item["type"], "item": item, "delay": 0, "ts": now} for item in reply.items
        ]
        return {
            "platformName": "vg",
            "success": True,
            "message": "Interaction successful",
            "chatState": {"state": conversation.state},
            "actionMessages": [],
            "turns": [
                {"from": "human", "messages": [human], "ts": now},
                {"from": "bot", "messages": bot, "ts": now},
            ],
            "origin": body.get("origin", "web-chat"),
            "userID": user_id,
            "agentID": self.agent_id,
        }

    async def _cut(self, request: web.Request, content: bytes, cut: Hang | Drop) -> web.StreamResponse:
        """Promise the whole body, send half of it, then stall or cut the connection."""
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(len(content))}
        )
        await response.prepare(request)
        await response.write(content[: len(content) // 2])
        if isinstance(cut, Hang):
            await self.until_disconnected()
        elif request.transport is not None:
            request.transport.abort()
        return response


def _problem(body: Any) -> str:
    """What the real endpoint's input validation would refuse."""
    if not isinstance(body, dict):
        return "Input validation failed: expected object"
    if unknown := set(body) - BODY_KEYS:
        return f"Input validation failed: unrecognized key {sorted(unknown)[0]!r}"
    action = body.get("action")
    if not isinstance(action, dict) or not isinstance(action.get("type"), str) or not action["type"]:
        return "Input validation failed: action.type is required"
    if action["type"] not in ACTION_TYPES:
        return f"Input validation failed: action.type must be one of {sorted(ACTION_TYPES)}"
    if action["type"] == "text" and (not isinstance(action.get("payload"), str) or not action["payload"]):
        return "Input validation failed: a text action needs a string payload"
    if "origin" in body and body["origin"] not in ORIGINS:
        return f"Input validation failed: invalid origin {body['origin']!r}"
    metadata = body.get("transcriptMetadata", {})
    if not isinstance(metadata, dict) or set(metadata) - METADATA_KEYS:
        return "Input validation failed: transcriptMetadata"
    if "state" in metadata and metadata["state"] not in STATES:
        return f"Input validation failed: invalid state {metadata['state']!r}"
    if not isinstance(body.get("variables", {}), dict):
        return "Input validation failed: variables must be an object"
    return ""
