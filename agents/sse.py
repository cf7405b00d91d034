"""Server-sent events over HTTP, shared by the Convai and OpenAI-compatible backends.

`json_events` opens the request through `open_stream` (so connect failures, 429 and 5xx before the reply
starts are retried with backoff, and HTTP errors map onto the error tree), then yields, for each network
read, the decoded JSON of every event it completed, under the first-event and idle timeouts. The timers
start once the response has arrived, so backoff before a retry never eats into the time the provider has
to start answering.

Batches are what keep hundreds of concurrent replies cheap: a busy process reads several events at once,
and the work after the parse (a timer, the renderer's bookkeeping) is paid once per read, not per event.
An event whose JSON spans several `data:` lines is joined as the SSE spec says. Events that are not
JSON are logged and skipped: one bad frame never costs the whole reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx

from agents.base import AgentError, AgentProtocolError
from agents.remote import RemoteAgentSettings, open_stream, with_timeouts

log = logging.getLogger(__name__)

DONE_MARKERS = frozenset({"[DONE]"})
"""Data lines that end a stream without being JSON (OpenAI's `data: [DONE]`)."""


@dataclass(frozen=True)
class JsonEvent:
    """One SSE event: its `event:` name ("message" when the server sent none) and its decoded data."""

    name: str
    data: Any


@asynccontextmanager
async def json_events(
    http: httpx.AsyncClient,
    settings: RemoteAgentSettings,
    provider: str,
    url: str,
    *,
    secrets: Collection[str] = (),
    **request: Any,
) -> AsyncIterator[AsyncIterator[list[JsonEvent]]]:
    """POST `request` to `url` and yield an iterator over the reply's JSON events, one non-empty list
    per network read.

    `secrets` are scrubbed from any error's text, in case a server echoes a credential in its error body.
    """
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"} | request.pop("headers", {})
    try:
        async with open_stream(http, settings, provider, "POST", url, headers=headers, **request) as response:
            content_type = response.headers.get("content-type", "").partition(";")[0].strip()
            if content_type != "text/event-stream":
                raise AgentProtocolError(f"{provider}: expected an event stream, got {content_type!r}")
            timed = with_timeouts(
                _decoded(response, provider),
                first=settings.first_event_timeout,
                idle=settings.idle_timeout,
                provider=provider,
            )
            events = cast(AsyncGenerator[list[JsonEvent], None], timed)  # with_timeouts is an async generator
            async with aclosing(events):
                yield events
    except AgentError as error:
        scrub(error, secrets)
        raise


async def _decoded(response: httpx.Response, provider: str) -> AsyncIterator[list[JsonEvent]]:
    parser = EventParser()
    async for text in response.aiter_text():
        batch: list[JsonEvent] = []
        for name, data in parser.feed(text):
            if data in DONE_MARKERS:
                if batch:
                    yield batch
                return
            if not data.strip():
                log.debug("%s: skipping an event without data (%r)", provider, name)
                continue
            try:
                batch.append(JsonEvent(name, json.loads(data)))
            except ValueError:
                log.warning("%s: skipping a malformed event (%d bytes of data)", provider, len(data))
        if batch:
            yield batch


class EventParser:
    """The SSE wire format, incrementally: lines end in CRLF, CR or LF; a blank line ends an event;
    `data:` lines join with a newline; a line starting with a colon is a comment. `id` and `retry` are
    ignored: no backend here reconnects. An event left unfinished when the stream ends is dropped, as
    the spec says."""

    def __init__(self) -> None:
        self._rest = ""
        self._name = ""
        self._data: list[str] = []

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Take in the next piece of the stream; return the (event name, data) of each event it ends."""
        text = self._rest + text
        held = ""
        if text.endswith("\r"):  # perhaps the first half of a CRLF
            text, held = text[:-1], "\r"
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, rest = text.split("\n")
        self._rest = rest + held
        events: list[tuple[str, str]] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._name or "message", "\n".join(self._data)))
                self._name, self._data = "", []
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._name = value
        return events


def scrub(error: AgentError, secrets: Collection[str]) -> None:
    """Remove credentials from an error's log text in place, keeping its class and retry hints."""
    detail = str(error)
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "[redacted]")
    error.args = (detail,)
