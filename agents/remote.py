"""What every networked backend shares: timeouts, retry with backoff and jitter, and the HTTP error map.

Retries only ever repeat a step that produced nothing the user has seen (a refused connection, a 429 or
5xx before the reply started), so a retried turn can never show the same words twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from pydantic import Field

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentProtocolError,
    AgentRateLimited,
    AgentRequestRefused,
    AgentSettings,
    AgentUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class RemoteAgentSettings(AgentSettings):
    """Timeouts and retry policy, shared by every provider that is reached over the network."""

    first_event_timeout: float = Field(30.0, gt=0, description="seconds to wait for the reply to start")
    idle_timeout: float = Field(30.0, gt=0, description="seconds of silence mid-reply before giving up")
    max_attempts: int = Field(4, ge=1, le=10, description="tries for a step that can safely be repeated")
    backoff_base: float = Field(
        0.5, ge=0, le=30, description="first retry delay; doubles each time, with jitter"
    )
    backoff_cap: float = Field(20.0, ge=0, le=300)


def backoff_delay(settings: RemoteAgentSettings, attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter; never sooner than a provider's Retry-After."""
    ceiling = min(settings.backoff_cap, settings.backoff_base * 2 ** (attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def is_retryable(error: AgentError) -> bool:
    return isinstance(error, AgentRateLimited | AgentUnavailable)


class Unanswered(Exception):
    """Carries an error past `with_retries`: the request was sent and not answered, so the provider may
    already be acting on it, and sending it again could make it act twice."""

    def __init__(self, error: AgentError) -> None:
        super().__init__(str(error))
        self.error = error


async def with_retries(settings: RemoteAgentSettings, provider: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run an idempotent step, retrying rate limits and outages with backoff. A step that raises
    `Unanswered` fails at once with the error it carries."""
    for attempt in range(1, settings.max_attempts + 1):
        try:
            return await step()
        except Unanswered as unanswered:
            raise unanswered.error from None
        except AgentError as error:
            if not is_retryable(error) or attempt == settings.max_attempts:
                raise
            delay = backoff_delay(settings, attempt, getattr(error, "retry_after", None))
            # the error's text already names the provider
            log.warning("%s; retry %d/%d in %.2fs", error, attempt, settings.max_attempts - 1, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def with_timeouts(
    events: AsyncIterator[T], *, first: float, idle: float, provider: str
) -> AsyncIterator[T]:
    """Re-yield `events`, failing with AgentUnavailable if the first or any later event is too slow.

    Only the wait for the next event counts. The stream has one timer, not one per event: it moves only
    when it fires and finds the wait it was set for over, so an event costs a clock reading (a bot
    streaming hundreds of replies reads thousands of events a second). Iterate it from one task."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "with_timeouts runs in a task"
    limit, what = first, "the reply to start"
    asked, waiting, expired = loop.time(), False, False
    timer: asyncio.TimerHandle | None = None

    def check() -> None:
        nonlocal timer, expired
        timer = None
        if not waiting:
            return  # armed again when the next wait begins
        if loop.time() < asked + limit:
            timer = loop.call_at(asked + limit, check)
        else:
            expired = True
            task.cancel()

    try:
        while True:
            asked, waiting = loop.time(), True
            if timer is None or asked + limit < timer.when():
                if timer is not None:
                    timer.cancel()
                timer = loop.call_at(asked + limit, check)
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if expired and task.uncancel() == 0:
                    raise AgentUnavailable(f"{provider}: waited {limit:g}s for {what}") from None
                raise
            finally:
                waiting = False
            yield event
            limit, what = idle, "the reply to continue"
    finally:
        if timer is not None:
            timer.cancel()
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def retry_after_seconds(response: httpx.Response, body: Any = None) -> float | None:
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            return None
    if isinstance(body, dict):
        value = body.get("retry_after") or (body.get("parameters") or {}).get("retry_after")
        if isinstance(value, int | float):
            return float(value)
    return None


def error_for_response(provider: str, response: httpx.Response, body: Any = None) -> AgentError:
    """Map an HTTP failure to the error tree. The detail is for logs; it never includes credentials."""
    status = response.status_code
    detail = f"{provider}: HTTP {status}"
    if isinstance(body, dict):
        message = body.get("detail") or body.get("message") or body.get("error")
        if isinstance(message, str | dict):
            detail += f": {str(message)[:200]}"
    if status in (401, 403):
        return AgentAuthError(detail)
    if status == 429:
        return AgentRateLimited(detail, retry_after=retry_after_seconds(response, body))
    if status >= 500:
        return AgentUnavailable(detail)
    if status == 404:
        return AgentProtocolError(detail, user_message=AgentAuthError.default_user_message)
    return AgentRequestRefused(detail)


def host_of(url: str) -> str:
    """`host:port` of a provider URL, for connect errors: never its path, query or credentials."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    settings: RemoteAgentSettings,
    provider: str,
    method: str,
    url: str,
    **request: Any,
) -> AsyncIterator[httpx.Response]:
    """Open a streaming HTTP response that has a 2xx status, retrying while nothing was received."""

    async def attempt() -> tuple[httpx.Response, Any]:
        stream = http.stream(method, url, timeout=httpx.Timeout(settings.first_event_timeout), **request)
        try:
            response = await stream.__aenter__()
        except httpx.ReadTimeout:
            waited = settings.first_event_timeout
            raise Unanswered(
                AgentUnavailable(f"{provider}: waited {waited:g}s for the reply to start")
            ) from None
        except httpx.TimeoutException as exc:
            raise AgentUnavailable(
                f"{provider}: timed out connecting to {host_of(url)} ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise AgentUnavailable(
                f"{provider}: cannot connect to {host_of(url)} ({type(exc).__name__})"
            ) from None
        if response.status_code < 400:
            return response, stream
        try:
            body = json_or_none(await response.aread())
        finally:
            await stream.__aexit__(None, None, None)
        raise error_for_response(provider, response, body)

    response, stream = await with_retries(settings, provider, attempt)
    try:
        yield response
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise AgentUnavailable(f"{provider}: connection lost mid-reply ({type(exc).__name__})") from None
    finally:
        await stream.__aexit__(None, None, None)
