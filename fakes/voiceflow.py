"""A loopback Voiceflow socket.io runtime (python-socketio `AsyncServer` on aiohttp), failures included.

It serves `/v4/interact/socket` and follows docs/PROTOCOLS "Voiceflow: socket.io runtime": `client.start`
(checked field by field, API key included) -> `client.started {newSessionRequired}` -> `session.create`
-> `session.created {sessionKey}` (a signed JWT) -> `action.send` -> `action.status accepted` ->
`action.trace`s -> `action.status completed`. It enforces what the real one expects of a client (the first
action of a new session is `launch`; one action in flight per session) and records every breach in
`rejections`, so a test can assert the client never committed one.

Each action is answered by the next queued script, a list of steps (traces, raw events, gates, hangs,
drops, restarts, rejections, errors). Without a script it answers like a small agent: a greeting on
`launch`, an echo of text (streamed as completion events when the client asked for them), and a
greeting back on `continue`.

    async with FakeVoiceflow() as fake:
        fake.script(text("Hello"), *choice("Yes", "No"))
        ... connect to fake.url with socketio_path=fake.path ...
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import socketio
from aiohttp import web

from fakes.http import Drop, Gate, Hang, Pause
from fakes.server import serve

PATH = "/v4/interact/socket"
SERVER_LOG = logging.getLogger(__name__)
"""The provider's own logs (they include what clients sent): not the bot's, so tests exclude them."""
GREETING = "Hi! I'm the Voiceflow test agent."
WELCOME_BACK = "Welcome back! Where were we?"
START_KEYS = {"userID", "projectID", "environmentID", "sessionKey", "authorization", "config"}
CONFIG_KEYS = {"completionEvents", "audioEvents", "userTimezone"}


@dataclass(frozen=True)
class Trace:
    """One `action.trace` of the action being answered."""

    type: str
    payload: Any = None


@dataclass(frozen=True)
class Emit:
    """Any event, as is, to the client (malformed payloads, `session.ended`, stray events)."""

    event: str
    data: Any = None


@dataclass(frozen=True)
class Disconnect:
    """Close the socket.io connection from the server side."""


@dataclass(frozen=True)
class Restart:
    """`server.restart` (with the action to replay, unless `replay` is off), then disconnect.

    `lose_session` forgets the session too, as a restart that loses state would."""

    replay: bool = True
    lose_session: bool = False


@dataclass(frozen=True)
class Reject:
    """`action.status rejected` instead of `accepted`: must be the first step."""

    reason: str = "action rejected"


@dataclass(frozen=True)
class Fail:
    """An `error` event; the action never completes."""

    error: str
    code: int | str | None = None


@dataclass(frozen=True)
class EndSession:
    """`session.ended {reason}`; the action never completes, the session is gone."""

    reason: str = "end_of_diagram"


Step = Trace | Emit | Gate | Pause | Hang | Drop | Disconnect | Restart | Reject | Fail | EndSession


def text(message: str) -> Trace:
    return Trace("text", {"message": message, "slate": {"content": [{"children": [{"text": message}]}]}})


def button(label: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """A choice button whose `request` (by default an intent-like path) the client must send back."""
    return {
        "name": label,
        "request": request or {"type": f"path-{label.lower()}", "payload": {"label": label}},
    }


def choice(*buttons: str | dict[str, Any]) -> list[Trace]:
    made = [button(b) if isinstance(b, str) else b for b in buttons]
    return [Trace("choice", {"buttons": made})]


def completion(*parts: str) -> list[Trace]:
    """The current streaming shape: one `completion` trace type with a `state`."""
    return [
        Trace("completion", {"state": "start", "delay": 0}),
        *(Trace("completion", {"state": "content", "content": part}) for part in parts),
        Trace("completion", {"state": "end"}),
    ]


def old_completion(first: str, *rest: str) -> list[Trace]:
    """The older streaming shape: completion-start / completion-continue / completion-end."""
    return [
        Trace("completion-start", {"completion": first, "type": "text"}),
        *(Trace("completion-continue", {"completion": part}) for part in rest),
        Trace("completion-end", {}),
    ]


@dataclass
class FakeSession:
    key: str
    user_id: str
    launched: bool = False
    in_flight: bool = False
    texts: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Client:
    """What the server knows about one connection."""

    gone: asyncio.Event = field(default_factory=asyncio.Event)
    start: dict[str, Any] | None = None
    session: FakeSession | None = None


class FakeVoiceflow:
    """Serve socket.io at `url` + `path`. Inspect `received`, `sessions`, `rejections`; await `wait_for`."""

    def __init__(
        self, *, api_key: str = "VF.DM.test-key", project_id: str = "project-1", path: str = PATH
    ) -> None:
        self.api_key = api_key
        self.project_id = project_id
        self.path = path
        self.url = ""
        self.received: list[tuple[str, Any]] = []
        """Every event a client sent, in order: (event name, data)."""
        self.sessions: dict[str, FakeSession] = {}
        self.rejections: list[str] = []
        self.connections = 0
        self.auth_failures = 0
        self._refusal: tuple[Any, ...] | None = None
        self._refusals_left: int | None = None
        self._changed = asyncio.Condition()
        self._scripts: deque[Sequence[Step]] = deque()
        self._clients: dict[str, _Client] = {}
        self._sio = socketio.AsyncServer(async_mode="aiohttp", logger=SERVER_LOG, engineio_logger=SERVER_LOG)
        self._stack = AsyncExitStack()
        for event, handler in {
            "connect": self._connect,
            "disconnect": self._disconnect,
            "client.start": self._client_start,
            "session.create": self._session_create,
            "action.send": self._action_send,
            "*": self._unknown,
        }.items():
            self._sio.on(event, handler)

    async def __aenter__(self) -> Self:
        app = web.Application()
        self._sio.attach(app, socketio_path=self.path.strip("/"))
        self.url = await self._stack.enter_async_context(serve(app))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for client in self._clients.values():
            client.gone.set()
        await self._stack.aclose()

    def script(self, *steps: Step | Sequence[Step]) -> None:
        """Answer the next action with `steps` (queued: call once per scripted action)."""
        flat: list[Step] = []
        for step in steps:
            flat.extend(step if isinstance(step, Sequence) else [step])
        self._scripts.append(flat)

    def refuse_connections(self, message: str, data: Any = None, *, times: int | None = None) -> None:
        """Refuse the next `times` socket.io connections (all, if None); the client sees `connect_error
        {message, data?}`."""
        self._refusal = (message,) if data is None else (message, data)
        self._refusals_left = times

    def expire(self, key: str) -> None:
        """Forget a session, as the real server does after inactivity."""
        self.sessions.pop(key, None)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds; it is checked whenever a client connects, sends or goes away."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _record(self, event: str, data: Any) -> None:
        self.received.append((event, data))
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def sent(self, event: str) -> list[Any]:
        return [data for name, data in self.received if name == event]

    @property
    def actions(self) -> list[dict[str, Any]]:
        return [data["action"] for data in self.sent("action.send")]

    @property
    def connected(self) -> int:
        return sum(not client.gone.is_set() for client in self._clients.values())

    # --- handlers ---------------------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self.connections += 1
        await self._notify()
        if self._refusal is not None:
            refusal = self._refusal
            if self._refusals_left is not None:
                self._refusals_left -= 1
                if self._refusals_left == 0:
                    self._refusal = None
            raise socketio.exceptions.ConnectionRefusedError(*refusal)
        self._clients[sid] = _Client()

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        client = self._clients.get(sid)
        if client is not None:
            client.gone.set()
        await self._notify()

    async def _unknown(self, event: str, sid: str, data: Any = None) -> None:
        await self._record(event, data)
        self.rejections.append(f"unknown event {event!r}")

    async def _client_start(self, sid: str, data: Any = None) -> None:
        await self._record("client.start", data)
        problem = _start_problem(data, self.project_id)
        if problem:
            return await self._refuse(sid, problem, 400)
        if data.get("authorization") != self.api_key:
            self.auth_failures += 1
            await self._sio.emit("error", {"code": 401, "error": "Unauthorized: invalid API key"}, to=sid)
            await self._sio.disconnect(sid)
            return
        client = self._clients[sid]
        client.start = data
        session = self.sessions.get(data.get("sessionKey", ""))
        client.session = session if session is not None and session.user_id == data["userID"] else None
        await self._sio.emit("client.started", {"newSessionRequired": client.session is None}, to=sid)

    async def _session_create(self, sid: str, data: Any = None) -> None:
        await self._record("session.create", data)
        client = self._clients[sid]
        if client.start is None:
            return await self._refuse(sid, "session.create before client.start", 400)
        if data not in ({}, None):
            self.rejections.append("session.create with a payload")
        session = FakeSession(key=self._jwt(client.start["userID"]), user_id=client.start["userID"])
        self.sessions[session.key] = client.session = session
        await self._sio.emit("session.created", {"sessionKey": session.key}, to=sid)

    async def _action_send(self, sid: str, data: Any = None) -> None:
        await self._record("action.send", data)
        session = self._clients[sid].session
        action = data.get("action") if isinstance(data, dict) else None
        if session is None:
            return await self._refuse(sid, "action.send without a session", 400)
        if not isinstance(action, dict) or not isinstance(action.get("type"), str) or set(data) != {"action"}:
            return await self._refuse(sid, f"malformed action.send {data!r}", 422)
        if session.in_flight:
            self.rejections.append("action sent while another was in flight")
            await self._status(sid, "rejected", str(uuid.uuid4()), reason="action in progress")
            return
        if not session.launched and action["type"] != "launch":
            self.rejections.append(f"first action of a new session was {action['type']!r}")
        session.launched = True
        session.actions.append(action)
        session.in_flight = True
        try:
            steps = self._scripts.popleft() if self._scripts else self._default(session, sid, action)
            await self._play(sid, action, steps)
        finally:
            session.in_flight = False

    # --- answering ---------------------------------------------------------------------------------

    def _default(self, session: FakeSession, sid: str, action: dict[str, Any]) -> Sequence[Step]:
        kind, payload = action["type"], action.get("payload")
        if kind == "launch":
            return [text(GREETING)]
        if kind == "continue":
            return [text(WELCOME_BACK)]
        if kind != "text":
            label = payload.get("label") if isinstance(payload, dict) else None
            return [text(f"you chose {label or kind}")]
        session.texts += 1
        reply = f"echo #{session.texts}: {payload}"
        start = self._clients[sid].start or {}
        if start.get("config", {}).get("completionEvents"):
            return completion(*re.findall(r"\S+\s*", reply))
        return [text(reply)]

    async def _play(self, sid: str, action: dict[str, Any], steps: Sequence[Step]) -> None:
        message_id = str(uuid.uuid4())
        if steps and isinstance(steps[0], Reject):
            await self._status(sid, "rejected", message_id, reason=steps[0].reason)
            return
        await self._status(sid, "accepted", message_id)
        for step in steps:
            match step:
                case Trace(type=kind, payload=payload):
                    trace = {"type": kind, "payload": payload, "time": 0}
                    await self._sio.emit("action.trace", {"trace": trace, "messageID": message_id}, to=sid)
                case Emit(event=event, data=data):
                    await self._sio.emit(event, data, to=sid)
                case Gate(event=event):
                    await event.wait()
                case Pause(seconds=seconds):
                    await asyncio.sleep(seconds)
                case Hang():
                    await self._clients[sid].gone.wait()
                    return
                case Drop():
                    self._sio.get_environ(sid)["aiohttp.request"].transport.abort()
                    return
                case Disconnect():
                    await self._sio.disconnect(sid)
                    return
                case Restart(replay=replay, lose_session=lose_session):
                    await self._sio.emit("server.restart", {"action": action} if replay else {}, to=sid)
                    if lose_session:
                        self.expire(self._session_of(sid).key)
                    await self._sio.disconnect(sid)
                    return
                case Fail(error=error, code=code):
                    body = {"error": error, **({"code": code} if code is not None else {})}
                    await self._sio.emit("error", body, to=sid)
                    return
                case EndSession(reason=reason):
                    await self._sio.emit("session.ended", {"reason": reason}, to=sid)
                    self.expire(self._session_of(sid).key)
                    return
                case Reject():
                    raise AssertionError("Reject must be the first step of a script")
        await self._status(sid, "completed", message_id)

    def _session_of(self, sid: str) -> FakeSession:
        session = self._clients[sid].session
        assert session is not None
        return session

    async def _status(self, sid: str, status: str, message_id: str, **extra: Any) -> None:
        await self._sio.emit("action.status", {"status": status, "messageID": message_id, **extra}, to=sid)

    async def _refuse(self, sid: str, problem: str, code: int) -> None:
        """A request the real server would refuse: tell the client, and record it as a client bug."""
        self.rejections.append(problem)
        await self._sio.emit("error", {"code": code, "error": problem}, to=sid)

    def _jwt(self, user_id: str) -> str:
        def part(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = part(json.dumps({"sid": uuid.uuid4().hex, "userID": user_id}).encode())
        signature = hmac.new(self.api_key.encode(), f"{header}.{claims}".encode(), hashlib.sha256)
        return f"{header}.{claims}.{part(signature.digest())}"


def _start_problem(data: Any, project_id: str) -> str:
    """What the real server checks in `client.start`; an empty string means it is well formed."""
    if not isinstance(data, dict):
        return "client.start is not an object"
    config = data.get("config")
    checks: list[tuple[bool, str]] = [
        (set(data) <= START_KEYS, f"unknown client.start keys {sorted(set(data) - START_KEYS)}"),
        (isinstance(data.get("userID"), str) and bool(data["userID"]), "userID missing"),
        (data.get("projectID") == project_id, "unknown projectID"),
        (all(isinstance(data.get(k, ""), str) for k in ("environmentID", "sessionKey")), "bad ids"),
        (isinstance(config, dict) and set(config) <= CONFIG_KEYS, "bad config"),
        (isinstance(config, dict) and isinstance(config.get("completionEvents"), bool), "completionEvents"),
        (isinstance(config, dict) and isinstance(config.get("audioEvents"), bool), "audioEvents"),
    ]
    return next((problem for ok, problem in checks if not ok), "")
