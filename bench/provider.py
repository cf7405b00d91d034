"""A paced OpenAI-compatible provider for the benchmark: streams each reply on a fixed schedule and
notes when it wrote the first and the last chunk.

The test fake (`fakes.openai.FakeOpenAI`) paces every event, the finish chunk and `[DONE]`
included, and keeps no clock per request. Here the schedule is absolute (chunk i is due
`first_chunk + i / rate` seconds after the request arrived, so a late wake-up does not push every
later chunk back), the first content rides in the opening chunk, and the last chunk goes out in the
same write as the finish chunk and `data: [DONE]`. The bridge can therefore show the final text the
moment the last chunk lands, and "final-visible lag after the last chunk" measures the bridge alone.

The request's last user message names the reply and its length, `"<reply id> <tokens>"`; the reply is
`reply_tokens(id, tokens)`, whose first token is the id itself, so every text the platforms show for
this reply starts with its id.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bench.observe import Pulse
from fakes.openai import chunk
from fakes.server import LoopbackService

PROMPT = re.compile(r"(\S+) (\d+)\s*$")
WORDS = (
    "able", "acid", "aged", "also", "area", "army", "away", "baby", "back", "ball", "band", "bank",
    "base", "bath", "bear", "beat", "been", "beer", "bell", "belt", "best", "bill", "bird", "blow",
    "blue", "boat", "body", "bone", "book", "born", "both", "bowl", "bulk", "burn", "bush", "busy",
    "cake", "call", "calm", "came", "camp", "card", "care", "case", "cash", "cast", "cell", "chat",
)  # fmt: skip
"""Four-letter lowercase words: nothing a markdown renderer could turn into formatting, and five
characters a token with its space, so 300 tokens fit one Discord message."""


def reply_tokens(reply_id: str, tokens: int) -> list[str]:
    """The reply's chunks: its id, then `tokens - 1` words, each with a trailing space."""
    offset = sum(map(ord, reply_id))
    return [f"{reply_id} ", *(f"{WORDS[(offset + i) % len(WORDS)]} " for i in range(1, tokens))]


def reply_text(reply_id: str, tokens: int) -> str:
    """The exact text a platform should show once the reply is final (renderers strip the ends)."""
    return "".join(reply_tokens(reply_id, tokens)).strip()


@dataclass
class Streamed:
    """One reply as the provider wrote it; times are `time.monotonic()` readings."""

    requested_at: float | None = None
    """When the bot's request reached the provider."""
    first_chunk_at: float | None = None
    last_chunk_at: float | None = None
    chunks: int = 0
    complete: bool = False


class PacedProvider(LoopbackService):
    """Serve `{url}/chat/completions` on loopback; read `streams` (by reply id) afterwards."""

    def __init__(
        self, *, rate: float, first_chunk: float, model: str = "bench", pulse: Pulse | None = None
    ) -> None:
        if rate <= 0 or first_chunk < 0:
            raise ValueError("rate must be positive and first_chunk not negative")
        self.pulse = pulse or Pulse()
        """Beats on every chunk written."""
        self.rate = rate
        self.first_chunk = first_chunk
        self.model = model
        self.streams: dict[str, Streamed] = {}
        self.rejected: list[str] = []
        """Requests this provider could not answer: a harness bug, never a bridge measurement."""

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        return app

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.json()
        messages = body.get("messages") or [{}]
        match = PROMPT.search(str(messages[-1].get("content", "")))
        if body.get("model") != self.model or not body.get("stream") or match is None:
            self.rejected.append(str(messages[-1].get("content", ""))[:80])
            error = {"message": "not a benchmark request", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        reply_id, count = match.group(1), int(match.group(2))
        stream = self.streams[reply_id] = Streamed(requested_at=arrived)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        tokens = reply_tokens(reply_id, count)
        for index, token in enumerate(tokens):
            delay = arrived + self.first_chunk + index / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            delta: dict[str, Any] = {"content": token}
            if index == 0:
                delta["role"] = "assistant"
            frame = _sse(chunk(delta).data)
            if index == len(tokens) - 1:
                frame += _sse(chunk({}, "stop").data) + "data: [DONE]\n\n"
            sent = time.monotonic()
            try:
                await response.write(frame.encode())
            except ConnectionError:
                return response  # the bridge gave up on this reply; it shows as not final
            if stream.first_chunk_at is None:
                stream.first_chunk_at = sent
            stream.last_chunk_at = sent
            stream.chunks += 1
            self.pulse.beat()
        stream.complete = True
        await response.write_eof()
        return response


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"
