"""Convocore (VoiceGlow / TIXAE Agents) over the Interact WebSocket: one connection per turn.

Each turn opens `wss://{eu|na}-gcp-api.vg-stuff.com/interact`, sends exactly one JSON request and reads
frames until the server closes with code 1000, which ends the reply. `convoId` is the continuity key: a
new conversation gets a fresh one, kept in the provider state, so a restarted bot continues the session.

Choices this backend makes where the protocol leaves room:
- Greeting: the prompt `"start"` produces the agent's greeting. It is sent only when a new conversation
  opens with a start command (`/start`, as Telegram's start button sends, or `start`).
  Any other first message goes to the agent as is, so a user who opens with a question gets the answer
  in one round trip instead of a greeting followed by a second request.
- Button presses: the Interact API only takes text, so a press sends the button's label (the words
  the user would have typed) as the prompt. ui_engine buttons carry Voiceflow-style `request` objects;
  a `{type:"text", payload:"..."}` request sends its payload, any other sends `payload.label`.
- Snapshots and streamed text: see `_Reply`.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, WebsocketUrl
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentEvent,
    AgentProtocolError,
    AgentUnavailable,
    BaseAgent,
    HandoffRequested,
    Message,
    SessionEnded,
    Sources,
    TextDelta,
    Turn,
    TurnEnd,
)
from agents.remote import (
    RemoteAgentSettings,
    error_for_response,
    host_of,
    with_retries,
    with_timeouts,
)
from agents.rich import item_events

log = logging.getLogger(__name__)

BUCKETS = {"eu": "voiceglow-eu", "na": "(default)"}
START_PROMPT = "start"
START_COMMANDS = frozenset({"start", "/start"})
TEXT_ITEMS = frozenset({"text", "speak"})
MAX_HELD_CHUNKS = 32
"""Out-of-order chunks held while waiting for a missing index; beyond this the gap is skipped."""
UNAVAILABLE_CLOSES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
"""Close codes that mean the server is going away or overloaded, rather than refusing our request."""
AUTH_CLOSES = frozenset({4001, 4003})
"""Close codes of a wrong or unauthorised key (the service accepts the upgrade, then closes)."""
AUTH_REASON = re.compile(r"unauthori[sz]ed|forbidden|auth|api.?key|token|secret", re.IGNORECASE)
"""A policy-violation close (1008) whose reason says it is about our credentials."""


class ConvocoreWsSettings(RemoteAgentSettings):
    kind: Literal["convocore"] = "convocore"
    agent_id: str = Field(min_length=1, max_length=200)
    owner_id: str = Field(min_length=1, max_length=200, description="agentData.ownerID: the workspace owner")
    api_key: SecretStr = Field(description="workspace secret, sent as `Authorization: Bearer`")
    region: Literal["eu", "na"] = "eu"
    url: WebsocketUrl | None = Field(None, description="overrides the regional Interact URL")

    @property
    def interact_url(self) -> str:
        return str(self.url) if self.url else f"wss://{self.region}-gcp-api.vg-stuff.com/interact"


class _RedactAuthorization(logging.Filter):
    """websockets logs every handshake header at DEBUG; the bearer secret must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "[redacted]")
        return True


wire_log = logging.getLogger(f"{__name__}.wire")
wire_log.addFilter(_RedactAuthorization())


class ConvocoreWsAgent(BaseAgent):
    def __init__(self, name: str, settings: ConvocoreWsSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.provider = f"convocore[{name}]"

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        stored = turn.provider_state.get("convoId")
        convo_id = stored if isinstance(stored, str) and stored else str(uuid.uuid4())
        request = self._request(turn, convo_id, new=convo_id != stored)
        ws = await with_retries(self.settings, self.provider, lambda: self._open(request))
        try:
            reply, order = _Reply(), _InOrder()
            frames = with_timeouts(
                self._frames(ws),
                first=self.settings.first_event_timeout,
                idle=self.settings.idle_timeout,
                provider=self.provider,
            )
            async for frame in frames:
                for event in self._events(frame, reply, order):
                    yield event
            for chunk in order.rest():
                for event in reply.chunk(chunk):
                    yield event
            for event in reply.finish():
                yield event
        except AgentError as error:
            error.provider_state = {"convoId": convo_id}  # the request reached the agent: keep its convo
            raise
        finally:
            await ws.close()
        yield TurnEnd({"convoId": convo_id})

    def _request(self, turn: Turn, convo_id: str, *, new: bool) -> dict[str, Any]:
        prompt = _button_prompt(turn) if turn.button else turn.text
        if new and prompt.strip().lower() in START_COMMANDS:
            prompt = START_PROMPT
        return {
            "agentId": self.settings.agent_id,
            "convoId": convo_id,
            "prompt": prompt,
            "bucket": BUCKETS[self.settings.region],
            "agentData": {"ownerID": self.settings.owner_id, "userID": turn.user_id},
            "lightConvoData": {"userName": turn.display_name, "origin": turn.platform},
        }

    async def _open(self, request: dict[str, Any]) -> ClientConnection:
        """Connect and send the request: safe to repeat, since nothing reached the agent if it fails."""
        secret = self.settings.api_key.get_secret_value()
        host = host_of(self.settings.interact_url)
        try:
            ws = await connect(
                self.settings.interact_url,
                additional_headers={"Authorization": f"Bearer {secret}"},
                open_timeout=self.settings.first_event_timeout,
                close_timeout=2,
                logger=wire_log,
            )
        except InvalidStatus as exc:
            raise _handshake_error(self.provider, exc) from None
        except TimeoutError:
            raise AgentUnavailable(f"{self.provider}: timed out opening the WebSocket to {host}") from None
        except (OSError, InvalidHandshake) as exc:
            raise AgentUnavailable(
                f"{self.provider}: cannot connect to {host} ({type(exc).__name__})"
            ) from None
        try:
            await ws.send(json.dumps(request))
        except ConnectionClosed as exc:
            await ws.close()
            if exc.rcvd is not None:  # the server closed on purpose: 4001 for a wrong key, say
                raise _close_error(self.provider, exc) from None
            raise AgentUnavailable(f"{self.provider}: closed before the request was sent ({exc})") from None
        log.debug("%s: sent prompt for convo %s", self.provider, request["convoId"])
        return ws

    async def _frames(self, ws: ClientConnection) -> AsyncIterator[dict[str, Any]]:
        """Decoded frames until the server closes with 1000; malformed frames are logged and skipped.

        Failures of the reply itself (a close other than 1000, a `debug:error`) are raised here, inside
        the timeout wrapper, so it closes this generator on the way out.
        """
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 1000:
                    return
                raise _close_error(self.provider, exc) from None
            try:
                frame = json.loads(raw)
            except ValueError:
                frame = None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                log.warning("%s: skipping a malformed frame (%d bytes)", self.provider, len(raw))
            elif frame["type"] == "debug:error" or (frame["type"] == "debug" and _is_error(frame)):
                message = _text_of(frame, "message", "error", "data", "detail")
                raise AgentError(f"{self.provider}: the agent reported an error: {message[:200]}")
            else:
                yield frame

    def _events(self, frame: dict[str, Any], reply: _Reply, order: _InOrder) -> list[AgentEvent]:
        kind = frame["type"]
        if kind == "chunk":
            return [event for chunk in order.push(frame) for event in reply.chunk(chunk)]
        if kind == "metadata":
            reply.add_sources(_field(frame, "metadata").get("sources"))
            return []
        if kind == "action":
            return self._action(frame)
        if kind in ("debug", "sync_chat_history"):
            log.debug("%s: ignoring a %s frame", self.provider, kind)
        else:
            log.info("%s: ignoring an unknown %r frame", self.provider, kind)
        return []

    def _action(self, frame: dict[str, Any]) -> list[AgentEvent]:
        """`action {type, payload?}`; the action's type sits beside the frame's own under `action`."""
        action = _field(frame, "action")
        name = action.get("type") if action is not frame else frame.get("actionType") or frame.get("name")
        if name == "request_handoff":
            payload = action.get("payload")
            reason = _text_of(payload, "reason", "message") if isinstance(payload, Mapping) else ""
            return [HandoffRequested(reason or "the agent asked for a human")]
        log.debug("%s: ignoring action %r", self.provider, name)
        return []


class _Reply:
    """Turns plain chunks and ui_engine snapshots into append-only neutral events.

    A snapshot holds the whole turn so far and replaces the previous one, but `TextDelta` can only
    append, so snapshots are diffed against what was already shown:
    - Items settle once a later item exists (or the reply ends); settled items are emitted once.
      A choice, image or card waits until it settles, so a snapshot never shows half of one.
    - The first unsettled text item streams: each snapshot appends only what its text adds to what was
      already shown, compared ignoring whitespace runs. Plain chunks count as that same text, so a
      snapshot that repeats streamed text shows nothing twice.
    - A later text item continues the same open message after a blank line, since a delta cannot start
      a new message; choices, media and cards close it as usual.
    - A snapshot that rewrites words already shown cannot take them back: once that item settles, its
      final text follows as a whole `Message` (logged), so nothing is lost.
    - Sources from metadata frames are collected and shown once, at the end, so they do not split the
      streamed message.
    """

    def __init__(self) -> None:
        self._items: list[tuple[str, Any]] = []
        self._settled = 0
        self._shown = ""
        self._block_open = False
        self._sources: list[str] = []

    def chunk(self, frame: Mapping[str, Any]) -> list[AgentEvent]:
        chunk = frame.get("chunk")
        if frame.get("ui_engine"):
            items = _snapshot_items(chunk)
            if items is None:
                log.warning("skipping a malformed ui_engine snapshot")
                return []
            self._items = items
            return self._advance(final=False)
        if not isinstance(chunk, str):
            log.warning("skipping a chunk without text")
            return []
        self._shown += chunk
        return self._emit([TextDelta(chunk)]) if chunk else []

    def add_sources(self, raw: Any) -> None:
        for source in raw if isinstance(raw, list) else ():
            url = source if isinstance(source, str) else _text_of(source, "url", "link", "href", "source")
            if url and url not in self._sources:
                self._sources.append(url)

    def finish(self) -> list[AgentEvent]:
        events = self._advance(final=True)
        if self._sources:
            events += self._emit([Sources(tuple(self._sources))])
        return events

    def _advance(self, *, final: bool) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        while self._settled < len(self._items):
            kind, payload = self._items[self._settled]
            settles = final or self._settled < len(self._items) - 1
            if kind in TEXT_ITEMS:
                events += self._text(kind, payload, settles=settles)
            elif settles:
                events += self._emit(item_events(kind, payload))
            if not settles:
                break
            self._settled += 1
        return events

    def _text(self, kind: str, payload: Any, *, settles: bool) -> list[AgentEvent]:
        mapped = item_events(kind, payload)
        text = mapped[0].text if mapped and isinstance(mapped[0], Message) else ""
        rest = _continuation(text, self._shown)
        events: list[AgentEvent] = []
        if rest is None:
            if settles:
                log.warning("a ui_engine snapshot rewrote text already shown; sending its final text whole")
                events = self._emit([Message(text)])
        elif rest:
            separator = "\n\n" if self._block_open and not self._shown.strip() else ""
            events = self._emit([TextDelta(separator + rest)])
            self._shown = text
        if settles:
            self._shown = ""
        return events

    def _emit(self, events: list[AgentEvent]) -> list[AgentEvent]:
        """Track whether a streamed message is still open, to know if the next text needs a separator."""
        for event in events:
            if isinstance(event, TextDelta):
                self._block_open = True
            elif not isinstance(event, HandoffRequested | SessionEnded):
                self._block_open = False
        return events


class _InOrder:
    """Releases chunk frames in `chunkIndex` order (from 0), holding any that arrive early."""

    def __init__(self) -> None:
        self._next = 0
        self._held: dict[int, Mapping[str, Any]] = {}

    def push(self, frame: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        index = frame.get("chunkIndex")
        if not isinstance(index, int) or isinstance(index, bool):
            return [frame]
        if index < self._next or index in self._held:
            log.warning("dropping a repeated chunk %d", index)
            return []
        self._held[index] = frame
        if len(self._held) > MAX_HELD_CHUNKS:
            log.warning("chunk %d never arrived; continuing without it", self._next)
            self._next = min(self._held)
        ready = []
        while self._next in self._held:
            ready.append(self._held.pop(self._next))
            self._next += 1
        return ready

    def rest(self) -> list[Mapping[str, Any]]:
        """At the end of the reply: whatever is still held, in order, skipping the missing indexes."""
        if self._held:
            log.warning(
                "reply ended with chunk %d missing; using the %d later ones", self._next, len(self._held)
            )
        ready = [self._held[index] for index in sorted(self._held)]
        self._held.clear()
        return ready


def _continuation(text: str, shown: str) -> str | None:
    """What `text` adds after `shown`, whitespace runs compared loosely: "" if nothing, None if it differs."""
    if not shown.strip():
        return text
    match = _loose_prefix(shown).match(text)
    if match:
        rest = text[match.end() :]
        return rest.lstrip() if shown[-1].isspace() else rest
    return "" if _loose_prefix(text).match(shown) or not text.strip() else None


def _loose_prefix(text: str) -> re.Pattern[str]:
    return re.compile(r"\s*" + r"\s+".join(re.escape(word) for word in text.split()))


def _snapshot_items(chunk: Any) -> list[tuple[str, Any]] | None:
    """`{from, messages:[{type, item:{type, payload}}]}` (a JSON string, or already decoded)."""
    if isinstance(chunk, str):
        try:
            chunk = json.loads(chunk)
        except ValueError:
            return None
    if not isinstance(chunk, Mapping) or not isinstance(chunk.get("messages"), list):
        return None
    if chunk.get("from") == "user":
        return []
    items = []
    for message in chunk["messages"]:
        item = message.get("item", message) if isinstance(message, Mapping) else None
        if isinstance(item, Mapping) and isinstance(item.get("type"), str):
            items.append((item["type"], item.get("payload")))
    return items


def _button_prompt(turn: Turn) -> str:
    assert turn.button is not None
    request = turn.button.payload
    if request.get("type") == "text" and isinstance(request.get("payload"), str):
        return str(request["payload"])
    payload = request.get("payload")
    label = payload.get("label") if isinstance(payload, Mapping) else None
    return label if isinstance(label, str) and label else turn.button.label


def _field(frame: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A frame's body, whether nested under `key` (or `data`) or spread beside `type`."""
    for candidate in (frame.get(key), frame.get("data")):
        if isinstance(candidate, Mapping):
            return candidate
    return frame


def _is_error(frame: Mapping[str, Any]) -> bool:
    return any(frame.get(key) == "error" for key in ("level", "debugType", "subtype", "kind", "status"))


def _text_of(mapping: Any, *keys: str) -> str:
    for key in keys:
        value = mapping.get(key) if isinstance(mapping, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return ""


def _handshake_error(provider: str, exc: InvalidStatus) -> AgentError:
    """The HTTP answer to the upgrade request, mapped like any other HTTP failure."""
    answer = exc.response
    try:
        body = json.loads(answer.body or b"")
    except ValueError:
        body = None
    response = httpx.Response(answer.status_code, headers=list(answer.headers.raw_items()))
    return error_for_response(f"{provider} handshake", response, body)


def _close_error(provider: str, exc: ConnectionClosed) -> AgentError:
    if exc.rcvd is None:
        return AgentUnavailable(f"{provider}: connection lost mid-reply")
    code, reason = exc.rcvd.code, exc.rcvd.reason
    detail = f"{provider}: closed with code {code} {reason[:200]!r}"
    if code in UNAVAILABLE_CLOSES:
        return AgentUnavailable(detail)
    if code in AUTH_CLOSES or (code == 1008 and AUTH_REASON.search(reason)):
        return AgentAuthError(detail)
    return AgentProtocolError(detail)
