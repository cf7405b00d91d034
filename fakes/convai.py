"""A loopback Convai Interaction API (`POST /connect/stream`) that answers like the real one.

It checks `X-API-Key` (401), insists on multipart/form-data with `character_id` and `text_input` (422,
FastAPI-style `{"detail": ...}` bodies), knows its character (404), refuses a `character_session_id`
of "-1" or one it never issued (400), and remembers how many turns each session had, so a test can
prove a session was continued. The reply is an SSE stream written by hand: `connection-started` with
the session id, then the scripted events (by default `bot-llm-started`, word-sized `bot-llm-text`
fragments echoing the input, `bot-transcription` with the full text, `bot-llm-stopped` and
`connection-stoppped`). Every JSON event is spread over several `data:` lines, as an SSE parser must
cope with.

    async with FakeConvai(api_key="k") as fake:
        fake.script(*reply("Hello ", "there"))
        ... POST f"{fake.url}/connect/stream" ...
"""

from __future__ import annotations

import re
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from fakes.http import Event, FakeHttpService, Step

FIELDS = frozenset({"character_id", "text_input", "character_session_id"})


def rtvi(kind: str, data: Any = None, *, multiline: bool = True, **extra: Any) -> Event:
    """An RTVI-style event `{"label": "rtvi-ai", "type": kind, "data": data}`."""
    body = {"label": "rtvi-ai", "type": kind} | ({"data": data} if data is not None else {}) | extra
    return Event(body, multiline=multiline)


def llm_text(text: str) -> Event:
    return rtvi("bot-llm-text", {"text": text})


def transcription(text: str) -> Event:
    return rtvi("bot-transcription", {"text": text})


def reply(*fragments: str, transcript: str | None = None) -> list[Step]:
    """The usual event sequence for one answer; `transcript` defaults to the fragments joined."""
    return [
        rtvi("bot-llm-started"),
        *(llm_text(fragment) for fragment in fragments),
        transcription("".join(fragments) if transcript is None else transcript),
        rtvi("bot-llm-stopped"),
        rtvi("connection-stoppped"),
    ]


class FakeConvai(FakeHttpService):
    """Serve `{url}/connect/stream`; inspect `requests` (the form fields) and `sessions` afterwards."""

    def __init__(
        self,
        *,
        api_key: str = "convai-key",
        character_id: str = "char-1",
        first_chunk_delay: float = 0.0,
        chunks_per_second: float | None = None,
    ) -> None:
        super().__init__(first_chunk_delay=first_chunk_delay, chunks_per_second=chunks_per_second)
        self.api_key = api_key
        self.character_id = character_id
        self.requests: list[dict[str, str]] = []
        self.sessions: Counter[str] = Counter()
        """Turns answered per character_session_id: above 1 means the client continued a session."""
        self._scripts: deque[Sequence[Step]] = deque()

    @property
    def url(self) -> str:
        return self.base_url

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/connect/stream", self._stream)]

    def error_body(self, status: int, message: str) -> Any:
        return {"detail": message}

    def script(self, *steps: Step) -> None:
        """Answer the next turn with `steps`, sent after `connection-started`."""
        self._scripts.append(steps)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if injected := await self.injected(request):
            return injected
        if request.headers.get("X-API-Key") != self.api_key:
            return self.error(401, "Invalid API key")
        if request.content_type != "multipart/form-data":
            return self.reject(422, f"expected multipart/form-data, got {request.content_type}")
        form = await request.post()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        if len(fields) != len(form) or set(fields) - FIELDS:
            return self.reject(422, f"unexpected form fields {sorted(form)}")
        for required in ("character_id", "text_input"):
            if not fields.get(required):
                return self.reject(422, f"field required: {required}")
        if fields["character_id"] != self.character_id:
            return self.reject(404, "Character not found")
        session = fields.get("character_session_id")
        if session is not None and session not in self.sessions:
            return self.reject(400, f"Invalid character_session_id {session!r}")
        session = session or uuid.uuid4().hex
        self.requests.append(fields)
        self.sessions[session] += 1
        steps = self._scripts.popleft() if self._scripts else self._echo(fields["text_input"], session)
        started = rtvi(
            "connection-started",
            message={"session_id": uuid.uuid4().hex, "transport": "sse", "character_session_id": session},
        )
        return await self.play_sse(request, [started, *steps])

    def _echo(self, text: str, session: str) -> list[Step]:
        answer = f"echo #{self.sessions[session]}: {text}"
        return reply(*re.findall(r"\S+\s*", answer))
