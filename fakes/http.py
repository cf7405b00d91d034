"""What the HTTP provider fakes (OpenAI-compatible, Convai, Convocore REST) share.

`FakeHttpService` serves an aiohttp app on loopback, counts requests, and injects failures before the
answer (an HTTP status with the provider's own error body, a hang, a dropped connection). `play_sse`
writes a scripted server-sent-event stream by hand, as real servers do: events paced like a provider,
JSON spread over several `data:` lines when asked, raw text for malformed frames, gates, hangs and drops.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.server import LoopbackService


@dataclass(frozen=True)
class Event:
    """One SSE event. `data` is sent as JSON; `multiline` spreads it over several `data:` lines."""

    data: Any
    event: str | None = None
    multiline: bool = False


@dataclass(frozen=True)
class Raw:
    """Text written to the stream as is: malformed events, comments, partial lines."""

    text: str


@dataclass(frozen=True)
class Gate:
    """Wait until the test sets `event` before sending the rest."""

    event: asyncio.Event


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Hang:
    """Send nothing more and keep the connection open until the client gives up."""


@dataclass(frozen=True)
class Drop:
    """Cut the TCP connection without finishing the response."""


Step = Event | Raw | Gate | Pause | Hang | Drop


@dataclass(frozen=True)
class Failure:
    """Answer the request with `status` and the provider's error body (or `body` as given)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


Injection = Failure | Hang | Drop


class FakeHttpService(LoopbackService):
    """Base of the HTTP fakes: subclasses add routes in `routes()` and say what their errors look like."""

    def __init__(self, *, first_chunk_delay: float = 0.0, chunks_per_second: float | None = None) -> None:
        self.first_chunk_delay = first_chunk_delay
        self.chunks_per_second = chunks_per_second
        self.hits = 0
        """Every request that reached a route, refused ones included."""
        self.rejections: list[str] = []
        """Requests the real service would refuse because the client got something wrong."""
        self.disconnected = asyncio.Event()
        """Set when a client went away while the fake was still answering."""
        self._injections: deque[Injection] = deque()

    def application(self) -> web.Application:
        # A handler is cancelled when its client goes away, which is how a hang learns that it ended.
        app = web.Application(handler_args={"handler_cancellation": True})
        app.add_routes(self.routes())
        return app

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        """The provider's JSON error body for `status`."""
        raise NotImplementedError

    def fail(
        self, status: int, *, times: int = 1, headers: dict[str, str] | None = None, body: Any = None
    ) -> None:
        """Answer the next `times` requests with `status` before looking at them."""
        self._injections.extend([Failure(status, headers or {}, body)] * times)

    def hang_next(self) -> None:
        """Accept the next request and never answer it."""
        self._injections.append(Hang())

    def drop_next(self) -> None:
        """Accept the next request and close the connection without an answer."""
        self._injections.append(Drop())

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(self.error_body(status, message), status=status, headers=headers)

    def reject(self, status: int, problem: str) -> web.Response:
        """Refuse a request the client got wrong, and remember it so the test fails unless it expects it."""
        self.rejections.append(problem)
        return self.error(status, problem)

    async def injected(self, request: web.Request) -> web.StreamResponse | None:
        """Count the request and play the next injected failure, if any (None: answer normally)."""
        self.hits += 1
        if not self._injections:
            return None
        match self._injections.popleft():
            case Failure(status=status, headers=headers, body=body):
                if body is None:
                    return self.error(status, f"injected HTTP {status}", headers)
                return web.json_response(body, status=status, headers=headers)
            case Hang():
                await self.until_disconnected()
            case Drop():
                _abort(request)
        return web.Response(status=499)  # never reaches the client: it hung up or was cut off

    async def until_disconnected(self) -> None:
        """Wait until aiohttp cancels the handler because the client hung up (or the fake shuts down)."""
        try:
            await asyncio.Event().wait()
        finally:
            self.disconnected.set()

    async def play_sse(self, request: web.Request, steps: Sequence[Step]) -> web.StreamResponse:
        """Stream `steps` as `text/event-stream`, paced by `first_chunk_delay` and `chunks_per_second`."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        sent = 0
        for step in steps:
            match step:
                case Event() | Raw():
                    await asyncio.sleep(self._delay_before(sent))
                    sent += 1
                    try:
                        await response.write(_encode(step).encode())
                    except ConnectionError:
                        self.disconnected.set()
                        return response
                case Gate(event=event):
                    await event.wait()
                case Pause(seconds=seconds):
                    await asyncio.sleep(seconds)
                case Hang():
                    await self.until_disconnected()
                case Drop():
                    _abort(request)
                    return response
        await response.write_eof()
        return response

    def _delay_before(self, sent: int) -> float:
        if sent == 0:
            return self.first_chunk_delay
        return 1 / self.chunks_per_second if self.chunks_per_second else 0.0


def _encode(step: Event | Raw) -> str:
    if isinstance(step, Raw):
        return step.text
    text = json.dumps(step.data, indent=2) if step.multiline else json.dumps(step.data)
    lines = [f"event: {step.event}"] if step.event else []
    lines += [f"data: {line}" for line in text.split("\n")]
    return "\n".join(lines) + "\n\n"


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
