"""Convocore (VoiceGlow / TIXAE Agents) over the REST interact endpoint: one POST per turn, no streaming.

Each turn POSTs `{base}/agents/{agent_id}/interact/{user_id}` (`Authorization: Bearer <secret>`) with
`{action, transcriptMetadata, origin}` and gets the whole reply back as JSON, so every bot message comes
out as a whole `Message` (or `Buttons`, `Media`...) rather than streamed `TextDelta`s. `user_id` is the
session key: a new conversation gets a fresh one, kept in the provider state, so a restarted bot
continues the same Convocore conversation.

Choices this backend makes where the protocol leaves room:
- Actions: the endpoint takes only `{type:"text"|"launch", payload}`. A new conversation opened with a
  start command (`/start`, `start`) sends `launch` for the agent's greeting; typed text, and a button
  press (its label, the words the user would have typed), send `text`.
- Only the reply's bot turns are shown; the `human` turn echoing the user's message is skipped. Turn
  items use the same shapes as Voiceflow traces and are mapped by `agents.rich`.
- Handoff: an answer whose conversation state (read from `chatState.state`, `chatState`, or a
  top-level `state`) is `requested_chat` raises `HandoffRequested`, unless a `live-agent-handoff` item
  in it already did. The state is kept in the provider state: while Convocore thinks a human was
  requested its AI stays silent, so the first turn after our moderators hand the user back sends
  `transcriptMetadata.state = "ai-chatting"` to give the conversation back to the agent. A state of
  `human-chatting` (someone answering in Convocore's own dashboard) is kept and left alone.
- A failed turn keeps `user_id` in `AgentError.provider_state`: the request may have reached the agent,
  so the next message continues that conversation rather than opening a new one.
- Failures: an answer that is not a JSON object, says `success: false` or carries an `appError` is an
  error; malformed turns and items inside a good answer are logged and skipped. Refused connections,
  429 and 5xx are retried with backoff (see `agents.remote`). A request that was sent but not
  answered in time is never repeated, since the agent may already have acted on it; nor is one whose
  answer broke off midway.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, HttpUrl, SecretStr

from agents.base import (
    AgentError,
    AgentEvent,
    AgentProtocolError,
    AgentUnavailable,
    BaseAgent,
    HandoffRequested,
    JSONDict,
    Turn,
    TurnEnd,
)
from agents.convocore_ws import START_COMMANDS
from agents.remote import RemoteAgentSettings, Unanswered, error_for_response, json_or_none, with_retries
from agents.rich import item_events
from agents.sse import scrub

log = logging.getLogger(__name__)

BASE_URLS = {"eu": "https://eu-gcp-api.vg-stuff.com/v3", "na": "https://na-gcp-api.vg-stuff.com/v3"}
ORIGINS = {"discord": "discord"}
"""Our platforms that Convocore knows as an `origin`; every other one is reported as `web-chat`."""
HANDOFF_STATE = "requested_chat"
HUMAN_STATE = "human-chatting"
AI_STATE = "ai-chatting"
USER_SIDES = frozenset({"human", "user"})
"""`from` values of turns and messages that are the user's own words, echoed back."""


class ConvocoreRestSettings(RemoteAgentSettings):
    kind: Literal["convocore_rest"] = "convocore_rest"
    agent_id: str = Field(min_length=1, max_length=200)
    api_key: SecretStr = Field(description="agent or workspace secret, sent as `Authorization: Bearer`")
    region: Literal["eu", "na"] = "eu"
    base_url: HttpUrl | None = Field(None, description="overrides the regional API root (`.../v3`)")

    def interact_url(self, user_id: str) -> str:
        base = str(self.base_url).rstrip("/") if self.base_url else BASE_URLS[self.region]
        return f"{base}/agents/{quote(self.agent_id, safe='')}/interact/{quote(user_id, safe='')}"


class ConvocoreRestAgent(BaseAgent):
    def __init__(self, name: str, settings: ConvocoreRestSettings, http: httpx.AsyncClient) -> None:
        super().__init__(name)
        self.settings = settings
        self.http = http
        self.provider = f"convocore-rest[{name}]"

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        stored_user = _text(turn.provider_state, "user_id")
        new = stored_user is None
        user_id = stored_user or str(uuid.uuid4())
        stored_state = _text(turn.provider_state, "chat_state")
        resuming = stored_state == HANDOFF_STATE  # the Relay only calls us once that handoff is over
        try:
            body = await self._interact(user_id, self._request(turn, new=new, resuming=resuming))
        except AgentError as error:
            error.provider_state = dict(turn.provider_state) | {"user_id": user_id}
            raise
        chat_state = _chat_state(body) or (AI_STATE if resuming else stored_state)
        if chat_state == HUMAN_STATE:
            log.warning(
                "%s: a human is chatting in Convocore's dashboard; its AI stays silent", self.provider
            )
        handoff_sent = False
        for event in self._events(body):
            handoff_sent = handoff_sent or isinstance(event, HandoffRequested)
            yield event
        if chat_state == HANDOFF_STATE and not handoff_sent:
            yield HandoffRequested("the agent asked for a human")
        yield TurnEnd({"user_id": user_id} | ({"chat_state": chat_state} if chat_state else {}))

    def _request(self, turn: Turn, *, new: bool, resuming: bool) -> JSONDict:
        origin = ORIGINS.get(turn.platform, "web-chat")
        metadata: JSONDict = {"userName": turn.display_name, "origin": origin}
        if resuming:
            metadata["state"] = AI_STATE
        return {"action": _action(turn, new=new), "transcriptMetadata": metadata, "origin": origin}

    async def _interact(self, user_id: str, body: JSONDict) -> Mapping[str, Any]:
        """POST the turn and return the decoded answer, with every failure mapped onto the error tree."""
        secret = self.settings.api_key.get_secret_value()
        request = self.http.build_request(
            "POST",
            self.settings.interact_url(user_id),
            json=body,
            headers={"Authorization": f"Bearer {secret}", "Accept": "application/json"},
            timeout=httpx.Timeout(self.settings.first_event_timeout),
        )
        try:
            response = await with_retries(self.settings, self.provider, lambda: self._send(request))
            content = await self._read(response)
            answer = _decode(self.provider, content)
        except AgentError as error:
            scrub(error, (secret,))
            raise
        log.debug("%s: answered user %s (%d bytes)", self.provider, user_id, len(content))
        return answer

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """One attempt: the response with its headers read and its body still to come."""
        host = request.url.netloc.decode()
        try:
            response = await self.http.send(request, stream=True)
        except httpx.ReadTimeout:
            waited = self.settings.first_event_timeout
            raise Unanswered(
                AgentUnavailable(f"{self.provider}: waited {waited:g}s for the reply to start")
            ) from None
        except httpx.TimeoutException as exc:
            raise AgentUnavailable(
                f"{self.provider}: timed out connecting to {host} ({type(exc).__name__})"
            ) from None
        except httpx.ConnectError as exc:
            raise AgentUnavailable(
                f"{self.provider}: cannot connect to {host} ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise AgentUnavailable(
                f"{self.provider}: connection lost before the answer ({type(exc).__name__})"
            ) from None
        if not response.is_error:
            return response
        try:
            content = await response.aread()
        except httpx.HTTPError:
            content = b""
        finally:
            await response.aclose()
        raise error_for_response(self.provider, response, json_or_none(content))

    async def _read(self, response: httpx.Response) -> bytes:
        """The rest of the answer, which must arrive within `idle_timeout` once it has started."""
        idle = self.settings.idle_timeout
        try:
            async with asyncio.timeout(idle):
                return await response.aread()
        except (TimeoutError, httpx.TimeoutException):
            raise AgentUnavailable(f"{self.provider}: the reply stalled for {idle:g}s") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise AgentUnavailable(
                f"{self.provider}: connection lost mid-reply ({type(exc).__name__})"
            ) from None
        finally:
            await response.aclose()

    def _events(self, body: Mapping[str, Any]) -> list[AgentEvent]:
        """The bot's messages in order; malformed turns and items are logged and skipped."""
        turns = body.get("turns")
        if turns is None:
            return []
        if not isinstance(turns, list):
            log.warning("%s: skipping `turns` that is a %s", self.provider, type(turns).__name__)
            return []
        events: list[AgentEvent] = []
        for turn in turns:
            if not isinstance(turn, Mapping):
                log.warning("%s: skipping a turn that is not an object", self.provider)
                continue
            if turn.get("from") in USER_SIDES:
                continue
            messages = turn.get("messages") or []
            for message in messages if isinstance(messages, list) else [messages]:
                if isinstance(message, Mapping) and message.get("from") in USER_SIDES:
                    continue
                item = _item(message)
                if item is None:
                    log.warning("%s: skipping a malformed message", self.provider)
                else:
                    events += item_events(*item)
        return events


def _action(turn: Turn, *, new: bool) -> JSONDict:
    if turn.button is not None:
        return {"type": "text", "payload": turn.button.label}
    if new and turn.text.strip().lower() in START_COMMANDS:
        return {"type": "launch"}
    return {"type": "text", "payload": turn.text}


def _item(message: Any) -> tuple[str, Any] | None:
    """`{from, type, item: {type, payload}, delay, ts}` (or the item itself) as (kind, payload)."""
    if not isinstance(message, Mapping):
        return None
    item = message.get("item")
    item = item if isinstance(item, Mapping) else message
    kind = item.get("type")
    return (kind, item.get("payload")) if isinstance(kind, str) else None


def _chat_state(body: Mapping[str, Any]) -> str | None:
    """The conversation state (`requested_chat`, `human-chatting`, `ai-chatting`, `ended_chat`), if told."""
    chat = body.get("chatState")
    nested = _text(chat, "state") if isinstance(chat, Mapping) else _text(body, "chatState")
    return nested or _text(body, "state")


def _text(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def _decode(provider: str, content: bytes) -> Mapping[str, Any]:
    """The answer object, or an error: a body that is no JSON object, `success: false` or an `appError`."""
    body = json_or_none(content)
    if not isinstance(body, Mapping):
        raise AgentProtocolError(f"{provider}: the answer is not a JSON object ({len(content)} bytes)")
    problem = body.get("appError") or (body.get("message") if body.get("success") is False else None)
    if body.get("success") is False or problem:
        raise AgentError(f"{provider}: the agent failed: {str(problem or 'no detail')[:200]}")
    return body
