"""Server-sent events over HTTP, shared by the Convai and OpenAI-compatible backends.

`json_events` opens the request through `open_stream` (so connect failures, 429 and 5xx before the reply
starts are retried with backoff, and HTTP errors map onto the error tree), then yields each event's
decoded JSON under the first-event and idle timeouts. The timers start once the response has arrived,
so backoff before a retry never eats into the time the provider has to start answering.

httpx-sse does the parsing, so an event whose JSON spans several `data:` lines is joined as the SSE
spec says. Events that are not JSON are logged and skipped: one bad frame never costs the whole reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
from httpx_sse import EventSource

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
) -> AsyncIterator[AsyncIterator[JsonEvent]]:
    """POST `request` to `url` and yield an iterator over the reply's JSON events.

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
            events = cast(AsyncGenerator[JsonEvent, None], timed)  # with_timeouts is an async generator
            async with aclosing(events):
                yield events
    except AgentError as error:
        scrub(error, secrets)
        raise


async def _decoded(response: httpx.Response, provider: str) -> AsyncIterator[JsonEvent]:
    async for sse in EventSource(response).aiter_sse():
        if sse.data in DONE_MARKERS:
            return
        if not sse.data.strip():
            log.debug("%s: skipping an event without data (%r)", provider, sse.event)
            continue
        try:
            data = json.loads(sse.data)
        except ValueError:
            log.warning("%s: skipping a malformed event (%d bytes of data)", provider, len(sse.data))
            continue
        yield JsonEvent(sse.event, data)


def scrub(error: AgentError, secrets: Collection[str]) -> None:
    """Remove credentials from an error's log text in place, keeping its class and retry hints."""
    detail = str(error)
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "[redacted]")
    error.args = (detail,)
