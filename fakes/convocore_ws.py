"""A loopback Convocore Interact WebSocket server that behaves like the real one, failures included.

It checks the bearer secret once the WebSocket is open (a wrong one closes it with 4001 'Unauthorized',
as the real service does), validates the single JSON request, remembers
every `convoId` it has seen (so tests can prove a session was continued), and answers each turn with a
script of steps: plain chunks, ui_engine snapshots, metadata, actions, raw frames, gates, hangs, drops and
close codes. Without a script it streams an echo of the prompt word by word, paced like a real agent.

    async with FakeConvocore(secret="s") as fake:
        fake.script(Chunk("Hello "), Chunk("there"), Close())
        ... connect to fake.url ...
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fakes.http import Gate, Pause

REQUEST_KEYS = {"agentId", "convoId", "prompt", "bucket", "agentData", "lightConvoData"}
BUCKETS = {"voiceglow-eu", "(default)"}
SERVER_LOG = logging.getLogger(__name__)
"""The provider's own logs (they include the headers it received): not the bot's, so tests exclude them."""
GREETING = "Hi! I'm the Convocore test agent. How can I help?"


@dataclass(frozen=True)
class Chunk:
    """A plain text chunk; `index` defaults to the next chunkIndex of this reply."""

    text: str
    index: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """A ui_engine chunk: the whole turn so far, as a JSON string."""

    items: Sequence[dict[str, Any]]
    index: int | None = None
    sender: str = "agent"


@dataclass(frozen=True)
class Frame:
    """Any frame as is: a dict is sent as JSON, a str or bytes raw (for malformed frames)."""

    data: dict[str, Any] | str | bytes


@dataclass(frozen=True)
class Close:
    code: int = 1000
    reason: str = ""


@dataclass(frozen=True)
class Hang:
    """Send nothing more and never close: the client has to time out."""


@dataclass(frozen=True)
class Drop:
    """Cut the TCP connection without a close frame."""


Step = Chunk | Snapshot | Frame | Gate | Pause | Close | Hang | Drop


def text_item(message: str) -> dict[str, Any]:
    return {"type": "text", "item": {"type": "text", "payload": {"message": message}}}


def choice_item(*labels: str) -> dict[str, Any]:
    buttons = [{"name": label, "request": {"type": "text", "payload": label}} for label in labels]
    return {"type": "choice", "item": {"type": "choice", "payload": {"buttons": buttons}}}


def visual_item(url: str) -> dict[str, Any]:
    return {"type": "visual", "item": {"type": "visual", "payload": {"image": url}}}


def metadata(*sources: Any) -> Frame:
    return Frame({"type": "metadata", "sources": list(sources), "turns": []})


def handoff(reason: str = "the user wants a person") -> Frame:
    return Frame({"type": "action", "action": {"type": "request_handoff", "payload": {"reason": reason}}})


@dataclass(frozen=True)
class HandshakeFailure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class FakeConvocore:
    """Serve `ws://127.0.0.1:PORT/interact`. Inspect `requests`, `convos`, `rejections` afterwards."""

    def __init__(
        self,
        *,
        secret: str = "convocore-secret",
        agent_id: str = "agent-1",
        owner_id: str = "owner-1",
        first_chunk_delay: float = 0.0,
        chunks_per_second: float | None = None,
    ) -> None:
        self.secret = secret
        self.agent_id = agent_id
        self.owner_id = owner_id
        self.first_chunk_delay = first_chunk_delay
        self.chunks_per_second = chunks_per_second
        self.requests: list[dict[str, Any]] = []
        self.convos: dict[str, int] = defaultdict(int)
        """Turns answered per convoId: a count above 1 means the client continued a session."""
        self.rejections: list[str] = []
        self.handshakes = 0
        self.auth_failures = 0
        """Connections closed with 4001 for a wrong key: the upgrade succeeds, then the server closes."""
        self.closed = asyncio.Event()
        """Set whenever a turn's connection ends, however it ended."""
        self._scripts: deque[Sequence[Step]] = deque()
        self._handshake_failures: deque[HandshakeFailure] = deque()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_handshake, logger=SERVER_LOG
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/interact"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def script(self, *steps: Step) -> None:
        """Answer the next turn with `steps` (queued: call once per scripted turn)."""
        self._scripts.append(steps)

    def fail_handshake(
        self, status: int, *, times: int = 1, headers: dict[str, str] | None = None, body: str = ""
    ) -> None:
        """Refuse the next `times` upgrade requests with an HTTP `status` (before auth is checked)."""
        self._handshake_failures.extend([HandshakeFailure(status, headers or {}, body)] * times)

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self._handshake_failures:
            failure = self._handshake_failures.popleft()
            response = connection.respond(failure.status, failure.body or HTTPStatus(failure.status).phrase)
            for name, value in failure.headers.items():
                response.headers[name] = value
            return response
        if request.path != "/interact":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            if ws.request is None or ws.request.headers.get("Authorization") != f"Bearer {self.secret}":
                self.auth_failures += 1
                await ws.close(4001, "Unauthorized")
                return
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=10)
            except (ConnectionClosed, TimeoutError):
                return
            problem, request = _validate(raw, self)
            if problem:
                self.rejections.append(problem)
                await ws.close(1008, problem[:120])
                return
            self.requests.append(request)
            self.convos[request["convoId"]] += 1
            steps = self._scripts.popleft() if self._scripts else self._echo(request)
            extra = asyncio.create_task(self._refuse_extra_requests(ws))
            try:
                await self._play(ws, steps)
            finally:
                extra.cancel()
        finally:
            self.closed.set()

    async def _refuse_extra_requests(self, ws: ServerConnection) -> None:
        """The protocol is one request per connection; anything more is a client bug."""
        try:
            async for _ in ws:
                self.rejections.append("more than one request on a connection")
        except ConnectionClosed:
            pass

    def _echo(self, request: dict[str, Any]) -> list[Step]:
        prompt, turn = request["prompt"], self.convos[request["convoId"]]
        text = GREETING if prompt == "start" else f"echo #{turn}: {prompt}"
        return [*(Chunk(word) for word in re.findall(r"\S+\s*", text)), Close()]

    async def _play(self, ws: ServerConnection, steps: Sequence[Step]) -> None:
        next_index, sent = 0, 0
        for step in steps:
            match step:
                case Chunk() | Snapshot() | Frame():
                    await asyncio.sleep(self._delay_before(sent))
                    sent += 1
                    if isinstance(step, Frame):
                        data = step.data
                    else:
                        index = next_index if step.index is None else step.index
                        next_index = index + 1
                        data = _chunk_frame(step, index)
                    try:
                        await ws.send(json.dumps(data) if isinstance(data, dict) else data)
                    except ConnectionClosed:
                        return
                case Gate(event=event):
                    await event.wait()
                case Pause(seconds=seconds):
                    await asyncio.sleep(seconds)
                case Close(code=code, reason=reason):
                    await ws.close(code, reason)
                    return
                case Hang():
                    await ws.wait_closed()
                    return
                case Drop():
                    ws.transport.abort()
                    return
        await ws.close(1000)

    def _delay_before(self, sent: int) -> float:
        if sent == 0:
            return self.first_chunk_delay
        return 1 / self.chunks_per_second if self.chunks_per_second else 0.0


def _chunk_frame(step: Chunk | Snapshot, index: int) -> dict[str, Any]:
    if isinstance(step, Chunk):
        return {"type": "chunk", "chunk": step.text, "chunkIndex": index, "ui_engine": False}
    snapshot = {"from": step.sender, "messages": list(step.items)}
    return {"type": "chunk", "chunk": json.dumps(snapshot), "chunkIndex": index, "ui_engine": True}


def _validate(raw: str | bytes, fake: FakeConvocore) -> tuple[str, dict[str, Any]]:
    """What the real server checks before answering; a problem closes the socket with 1008."""
    try:
        request = json.loads(raw)
    except ValueError:
        return "request is not JSON", {}
    if not isinstance(request, dict):
        return "request is not an object", {}
    checks: list[tuple[bool, str]] = [
        (set(request) <= REQUEST_KEYS and REQUEST_KEYS <= set(request), f"bad keys {sorted(request)}"),
        (request.get("agentId") == fake.agent_id, "unknown agentId"),
        (_nonempty(request.get("convoId")), "convoId missing"),
        (isinstance(request.get("prompt"), str), "prompt missing"),
        (request.get("bucket") in BUCKETS, "unknown bucket"),
        (_shape(request.get("agentData"), {"ownerID", "userID"}), "bad agentData"),
        (
            _shape(request.get("lightConvoData"), {"userName", "origin"}, optional=_LIGHT),
            "bad lightConvoData",
        ),
    ]
    for ok, problem in checks:
        if not ok:
            return problem, {}
    if request["agentData"]["ownerID"] != fake.owner_id:
        return "ownerID does not own this agent", {}
    return "", request


_LIGHT = frozenset({"userEmail", "userPhone"})


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _shape(value: Any, required: set[str], optional: frozenset[str] = frozenset()) -> bool:
    return (
        isinstance(value, dict)
        and required <= set(value) <= required | optional
        and all(isinstance(value[key], str) for key in value)
        and all(_nonempty(value[key]) for key in required)
    )
