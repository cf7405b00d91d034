"""Convai characters over the Interaction API: one streamed POST per turn.

Each turn POSTs `{url}/connect/stream` (`X-API-Key`, multipart/form-data with `character_id`,
`text_input` and, once a conversation exists, `character_session_id`) and reads the SSE reply:
`connection-started` carries the `character_session_id` to keep, `bot-llm-text` streams fragments,
`bot-transcription` carries the full text, and `connection-stoppped` (three p's, as Convai spells it;
the two-p spelling is accepted too) or the end of the stream ends the turn.

Event types are read from the JSON's `type` (RTVI style, `{"label": "rtvi-ai", "type", "data"}`), or from
the SSE `event:` name when the JSON has none.

The full transcription and the streamed fragments describe the same words, so they are reconciled
rather than both shown (see `_Transcript`). Convai has no handoff of its own: only the user's `/human`
raises one, and that is the Relay's business.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import httpx
from pydantic import Field, HttpUrl, SecretStr

from agents.base import AgentError, AgentEvent, BaseAgent, TextDelta, Turn, TurnEnd
from agents.remote import RemoteAgentSettings
from agents.sse import JsonEvent, json_events

log = logging.getLogger(__name__)

STOPPED = frozenset({"connection-stoppped", "connection-stopped"})
NEW_SESSION = frozenset({"", "-1"})
"""Stored session ids that mean "no conversation yet"; "-1" must never be sent back."""


class ConvaiSettings(RemoteAgentSettings):
    kind: Literal["convai"] = "convai"
    url: HttpUrl = Field(HttpUrl("https://live.convai.com"), description="`/connect/stream` is appended")
    character_id: str = Field(min_length=1, max_length=200)
    api_key: SecretStr = Field(description="sent as `X-API-Key`")

    @property
    def stream_url(self) -> str:
        return str(self.url).rstrip("/") + "/connect/stream"


class ConvaiAgent(BaseAgent):
    def __init__(self, name: str, settings: ConvaiSettings, http: httpx.AsyncClient) -> None:
        super().__init__(name)
        self.settings = settings
        self.http = http
        self.provider = f"convai[{name}]"

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        stored = turn.provider_state.get("character_session_id")
        session_id = stored if isinstance(stored, str) and stored not in NEW_SESSION else None
        transcript = _Transcript()
        try:
            async for event in self._reply(turn, session_id, transcript):
                if isinstance(event, str):
                    session_id = event
                else:
                    yield event
        except AgentError as error:
            if session_id:  # Convai opened (or we had) a conversation: a failed turn must not lose it
                error.provider_state = {"character_session_id": session_id}
            raise
        yield TurnEnd({"character_session_id": session_id} if session_id else {})

    async def _reply(
        self, turn: Turn, session_id: str | None, transcript: _Transcript
    ) -> AsyncIterator[AgentEvent | str]:
        """The reply's events, and (as a plain string) the character_session_id once Convai names it."""
        secret = self.settings.api_key.get_secret_value()
        async with json_events(
            self.http,
            self.settings,
            self.provider,
            self.settings.stream_url,
            secrets=(secret,),
            headers={"X-API-Key": secret},
            files=self._form(turn, session_id),
        ) as batches:
            async for batch in batches:
                for event in batch:
                    if not isinstance(event.data, Mapping):
                        log.warning(
                            "%s: skipping a %r event that is not an object", self.provider, event.name
                        )
                        continue
                    kind, body = _kind(event), event.data
                    if kind == "connection-started":
                        if started := _session_id(body):
                            yield started
                    elif kind == "bot-llm-text":
                        if delta := transcript.fragment(_text(body)):
                            yield TextDelta(delta)
                    elif kind == "bot-transcription":
                        if delta := transcript.full(_text(body)):
                            yield TextDelta(delta)
                    elif kind in STOPPED:
                        return
                    elif kind == "error" or kind.endswith("-error"):
                        raise AgentError(
                            f"{self.provider}: the character reported an error: {_error_text(body)}"
                        )
                    else:
                        log.debug("%s: ignoring a %r event", self.provider, kind)

    def _form(self, turn: Turn, session_id: str | None) -> dict[str, tuple[None, str]]:
        """Multipart fields (httpx's `data=` alone would send urlencoded, which Convai refuses)."""
        text = turn.button.label if turn.button else turn.text
        fields = {"character_id": self.settings.character_id, "text_input": text}
        if session_id:
            fields["character_session_id"] = session_id
        return {name: (None, value) for name, value in fields.items()}


class _Transcript:
    """Keeps what was shown equal to the character's words without showing them twice.

    `bot-llm-text` fragments stream verbatim as they come. `bot-transcription` is the full text: only
    what it adds beyond the words already shown is appended (compared ignoring whitespace, since
    fragments may split or trim it differently), so the final text ends as the transcription. The same
    holds in the other order: fragments that repeat a transcription already shown add nothing. Words
    that contradict what was shown cannot be taken back from a streamed message; that is logged and
    the shown text kept.
    """

    def __init__(self) -> None:
        self._shown = ""
        self._streamed = ""
        self._full_seen = False
        self._diverged = False

    def fragment(self, text: str) -> str:
        self._streamed += text
        if not self._full_seen:  # the usual order: nothing to compare yet, so no rescanning per fragment
            self._shown += text
            return text
        return self._extend(self._streamed)

    def full(self, text: str) -> str:
        self._full_seen = True
        return self._extend(text)

    def _extend(self, text: str) -> str:
        rest = _beyond(text, self._shown)
        if rest is None:
            if not self._diverged:
                log.warning("convai: the reply's words changed after they were shown; keeping those")
            self._diverged = True
            return ""
        self._shown += rest
        return rest


def _beyond(text: str, shown: str) -> str | None:
    """What `text` adds after `shown`, ignoring whitespace: "" if nothing, None if they disagree."""
    i = 0
    for char in shown:
        if char.isspace():
            continue
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return ""
        if text[i] != char:
            return None
        i += 1
    rest = text[i:]
    return rest.lstrip() if shown[-1:].isspace() else rest


def _kind(event: JsonEvent) -> str:
    kind = event.data.get("type")
    return kind if isinstance(kind, str) else event.name


def _session_id(body: Mapping[str, Any]) -> str | None:
    """`connection-started {message: {character_session_id}}`, or the id beside `type` or under `data`."""
    for holder in (body.get("message"), body.get("data"), body):
        value = holder.get("character_session_id") if isinstance(holder, Mapping) else None
        if isinstance(value, str) and value not in NEW_SESSION:
            return value
    return None


def _text(body: Mapping[str, Any]) -> str:
    data = body.get("data")
    value = data.get("text") if isinstance(data, Mapping) else body.get("text")
    if not isinstance(value, str):
        log.warning("convai: skipping a %r event without text", body.get("type"))
        return ""
    return value


def _error_text(body: Mapping[str, Any]) -> str:
    for holder in (body.get("data"), body):
        if isinstance(holder, Mapping):
            for key in ("detail", "message", "error"):
                if isinstance(holder.get(key), str):
                    return str(holder[key])[:200]
    return "no detail"
