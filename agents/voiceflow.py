"""Voiceflow over its socket.io runtime (`general-runtime.voiceflow.com`, path `/v4/interact/socket`).

A turn opens one socket.io connection, runs the handshake (`client.start`, then `session.create` when the
server asks for a new session), sends its action(s), reads `action.trace`s until `action.status
completed`, and disconnects. The session lives on in the provider state as `{sessionKey, userID}`: any
later connection, from this process or after a restart, resumes it by sending the key in `client.start`.

Connection model: one connection per session, opened for a turn and closed at its end.
- Sharing or pooling a connection across sessions is not possible: `client.start` binds a socket to
  one user and session.
- Keeping a socket open per session between turns would hold one connection per idle conversation
  (thousands) to receive events nobody can show: the Relay only hears from an agent during a turn.
- A turn-scoped socket keeps every failure local to the turn. The cost is one handshake per turn
  (about two round trips), which is small next to the agent's own latency.
- One action in flight per session: turns on the same session take a per-session lock, so a second
  turn waits for the first to complete instead of interleaving actions, as the protocol requires.

Choices this backend makes where the protocol leaves room:
- Identity: a new conversation gets its own `userID` (`platform-user-random`), so one person's
  conversations in different chats never share Voiceflow state, while Voiceflow's transcripts still
  show who it was.
- Greeting: a new session always starts with `launch`, and the user's message follows as a second
  action in the same turn, so the user gets the greeting and the answer in one reply. A start command
  (`/start`, `start`) sends `launch` alone; on a running session it restarts the flow, which is what a
  Telegram user pressing /start expects.
- Streaming: with `completion_events` on, completions stream as `TextDelta`s (both the current
  `completion` trace and the older `completion-start/continue/end` shapes). Consecutive completions
  continue the same message after a blank line, since a delta cannot open a new one. Other traces go
  through `agents.rich`.
- Handoff: a `live-agent-handoff` trace or a custom action named in `handoff_actions` raises
  `HandoffRequested`. When the moderator hands the user back, `resume` sends `{type: "continue"}`.
- `no-reply` traces are ignored: the bot cannot speak unprompted between turns, and Voiceflow's own
  session timeout covers a user who went quiet.
- Retries and reconnection: the handshake is retried with the agent's exponential backoff and jitter,
  because no action has been sent yet. Once an action is sent it is never repeated on our own
  initiative, because the agent may already have acted on it. So a dropped connection ends the turn
  with `AgentUnavailable`. python-socketio's automatic reconnection is off for this reason.
- `server.restart`: the backend reconnects (after a backoff delay, on a fresh client, since
  python-socketio does not reconnect after a server-side disconnect) with the same sessionKey and
  replays the action the server names, as the protocol says. What the user already saw of it is not
  shown twice: streamed text is taken back with `Rewind` and replaced by the replay in the same
  message, and replayed whole messages equal to ones already shown are skipped. If the restart lost
  the session (`newSessionRequired`), the turn ends saying so and the stale sessionKey is dropped.
- A failed turn still keeps the session it opened (`AgentError.provider_state`), once an action was
  sent on it, so the next message continues it instead of greeting again.
- A rejected action (`action.status rejected`) shows the user what to do; its reason goes to the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
import zoneinfo
from collections.abc import AsyncIterator, Collection, Mapping, MutableMapping
from functools import partial
from typing import Any, Literal, TypeGuard

import socketio
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from socketio.exceptions import SocketIOError

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentEvent,
    AgentProtocolError,
    AgentRateLimited,
    AgentUnavailable,
    BaseAgent,
    HandoffRequested,
    JSONDict,
    Rewind,
    SessionEnded,
    TextDelta,
    Turn,
    TurnEnd,
)
from agents.remote import RemoteAgentSettings, backoff_delay, host_of, with_retries, with_timeouts
from agents.rich import item_events

log = logging.getLogger(__name__)

WIRE_LOG = logging.getLogger(f"{__name__}.wire")
"""python-socketio's log of every packet, secrets redacted; set it to INFO to trace the wire.

Errors only by default: the library warns "aborting" on every ordinary disconnect, and the failures that
matter come out of the turn as typed errors anyway."""
WIRE_LOG.setLevel(logging.ERROR)

LAUNCH: JSONDict = {"type": "launch"}
CONTINUE: JSONDict = {"type": "continue"}
START_COMMANDS = frozenset({"", "start", "/start"})
OLD_COMPLETION = frozenset({"completion-start", "completion-continue", "completion-end"})
AUTH_CODES = frozenset({"401", "403", "UNAUTHORIZED", "UNAUTHENTICATED", "FORBIDDEN", "INVALID_API_KEY"})
RATE_CODES = frozenset({"429", "RATE_LIMITED", "TOO_MANY_REQUESTS"})
UNAVAILABLE_CODES = frozenset({"INTERNAL", "INTERNAL_ERROR", "UNAVAILABLE", "SERVICE_UNAVAILABLE"})
LOST = "The assistant restarted and lost our conversation. Your next message starts a new one."
BUSY = "The assistant is still answering your previous message. Please wait for it, then send this again."
REJECTED = (
    "The assistant turned that message down. Please rephrase it; if it keeps happening, "
    "ask for a person with /human."
)
BUSY_REASONS = ("in progress", "in flight", "busy", "pending")
"""Words of a rejection reason meaning another action is still running on the session."""


class VoiceflowSettings(RemoteAgentSettings):
    kind: Literal["voiceflow"] = "voiceflow"
    runtime_url: AnyHttpUrl = Field(
        AnyHttpUrl("https://general-runtime.voiceflow.com"), description="the socket.io server"
    )
    socketio_path: str = Field(
        "/v4/interact/socket", pattern=r"^/[A-Za-z0-9._~/-]*$", description="goes apart from the URL"
    )
    api_key: SecretStr = Field(min_length=1, description="Dialog API key, sent as `authorization`")
    project_id: str = Field(min_length=1, max_length=200)
    environment_id: str | None = Field(
        None, min_length=1, max_length=200, description="e.g. `production`; the server's default if unset"
    )
    completion_events: bool = Field(True, description="stream LLM answers as they are written")
    user_timezone: str | None = Field(None, description="IANA name, e.g. Europe/Paris")
    handoff_actions: tuple[str, ...] = Field(
        ("talk_to_agent",), description="custom action names that mean: get a human"
    )

    @field_validator("runtime_url")
    @classmethod
    def _no_path(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        """python-socketio keeps only the host of the URL, so a path here would be silently dropped."""
        if value.path not in (None, "", "/"):
            raise ValueError(f"put the path {value.path!r} in socketio_path; runtime_url is scheme://host")
        return value

    @field_validator("user_timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


class _Redacting(logging.LoggerAdapter[logging.Logger]):
    """The wire log for one agent: its API key (sent in `client.start`) never reaches a log record."""

    def __init__(self, logger: logging.Logger, secret: str) -> None:
        super().__init__(logger, {})
        self._secrets = tuple({secret, json.dumps(secret)[1:-1]} - {""})

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, self.scrub(text), **kwargs)


class _ServerRestart(Exception):
    """`server.restart`: reconnect and replay `action` (the server's copy, if it sent one)."""

    def __init__(self, action: JSONDict | None) -> None:
        super().__init__("server.restart")
        self.action = action


class _Socket:
    """One socket.io connection: every server event lands in `inbox`, in order, for the turn to read."""

    def __init__(self, settings: VoiceflowSettings, provider: str, wire: _Redacting) -> None:
        self.settings = settings
        self.provider = provider
        self.wire = wire
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.sio = socketio.AsyncClient(reconnection=False, logger=wire, engineio_logger=wire)
        self.sio.on("*", self._push)
        for reserved in ("connect_error", "disconnect"):
            self.sio.on(reserved, partial(self._push, reserved))

    async def _push(self, event: str, *args: Any) -> None:
        self.inbox.put_nowait((event, args[0] if len(args) == 1 else (args or None)))

    @property
    def host(self) -> str:
        return host_of(str(self.settings.runtime_url))

    async def connect(self) -> None:
        timeout = self.settings.first_event_timeout
        try:
            async with asyncio.timeout(timeout):
                await self.sio.connect(
                    str(self.settings.runtime_url),
                    socketio_path=self.settings.socketio_path,
                    transports=["websocket"],
                    wait_timeout=timeout,
                )
        except TimeoutError:
            raise AgentUnavailable(f"{self.provider}: timed out connecting to {self.host}") from None
        except SocketIOError as exc:
            while not self.inbox.empty():
                event, data = self.inbox.get_nowait()
                if event == "connect_error" and isinstance(data, Mapping) and "message" in data:
                    raise self._refusal(data) from None
            raise AgentUnavailable(f"{self.provider}: cannot connect to {self.host} ({exc})") from None

    def _refusal(self, data: Mapping[str, Any]) -> AgentError:
        """The server refused the socket.io connection itself; unless it says why, assume our credentials."""
        details = data.get("data")
        code = details.get("code") if isinstance(details, Mapping) else None
        error = self.reported_error(
            "refused the connection", code or data.get("message"), data.get("message")
        )
        return error if type(error) is not AgentError else AgentAuthError(str(error))

    async def emit(self, event: str, data: JSONDict) -> None:
        try:
            await self.sio.emit(event, data)
        except SocketIOError as exc:
            raise AgentUnavailable(f"{self.provider}: could not send {event} ({exc})") from None

    async def expect(self, name: str) -> Mapping[str, Any]:
        """The next `name` event of the handshake; a malformed one is fatal, the handshake cannot go on."""
        try:
            async with asyncio.timeout(self.settings.first_event_timeout):
                while True:
                    event, data = await self.inbox.get()
                    if event != name:
                        self.check(event, data)
                    elif isinstance(data, Mapping):
                        return data
                    else:
                        raise AgentProtocolError(f"{self.provider}: malformed {name} ({type(data).__name__})")
        except TimeoutError:
            raise AgentUnavailable(
                f"{self.provider}: waited {self.settings.first_event_timeout:g}s for {name}"
            ) from None

    def check(self, event: str, data: Any) -> None:
        """Raise for events that end the turn whatever it was waiting for; log anything else."""
        if event == "error":
            body = data if isinstance(data, Mapping) else {"error": data}
            raise self.reported_error("reported an error", body.get("code"), body.get("error"))
        if event == "disconnect":
            raise AgentUnavailable(f"{self.provider}: connection lost ({data})")
        log.info("%s: ignoring an unexpected %r event", self.provider, event)

    def reported_error(self, what: str, code: Any, message: Any) -> AgentError:
        """Map a server-reported failure to the error tree by its code; the detail is scrubbed of secrets."""
        detail = self.wire.scrub(f"{self.provider}: the server {what}: code={code!r} {str(message)[:200]!r}")
        key = str(code).strip().upper().replace(" ", "_") if code is not None else ""
        if key in AUTH_CODES:
            return AgentAuthError(detail)
        if key in RATE_CODES:
            return AgentRateLimited(detail)
        if key in UNAVAILABLE_CODES or (key.isdigit() and 500 <= int(key) < 600):
            return AgentUnavailable(detail)
        return AgentError(detail)

    async def close(self) -> None:
        """Disconnect, and release the HTTP session even when the connection never completed."""
        try:
            await self.sio.disconnect()
        except (SocketIOError, OSError) as exc:
            log.debug("%s: error while disconnecting: %s", self.provider, exc)


class _Link:
    """A turn's connection to one session; reopened with the same sessionKey after `server.restart`."""

    def __init__(self, agent: VoiceflowAgent, user_id: str, key: str | None) -> None:
        self.agent = agent
        self.user_id = user_id
        self.key = key
        self.socket: _Socket | None = None
        self.fresh = False
        """The session was created in this turn."""
        self.acted = False
        """An action was sent on the session: a fresh one has been launched and is worth keeping."""

    async def open(self) -> bool:
        """Connect and run the handshake, retrying outages with backoff; True if a new session was made."""
        settings = self.agent.settings
        return await with_retries(settings, self.agent.provider, self._handshake)

    async def _handshake(self) -> bool:
        socket = _Socket(self.agent.settings, self.agent.provider, self.agent.wire)
        try:
            await socket.connect()
            await socket.emit("client.start", self.agent.start_payload(self.user_id, self.key))
            started = await socket.expect("client.started")
            # A server that does not confirm the old session gets a new one, rather than actions it may drop.
            new = self.key is None or started.get("newSessionRequired") is not False
            if new:
                await socket.emit("session.create", {})
                created = await socket.expect("session.created")
                key = created.get("sessionKey")
                if not isinstance(key, str) or not key:
                    raise AgentProtocolError(f"{self.agent.provider}: session.created without a sessionKey")
                self.key = key
                self.fresh, self.acted = True, False
        except BaseException:
            await socket.close()
            raise
        self.socket = socket
        return new

    async def reopen(self, attempt: int) -> None:
        await self.close()
        await asyncio.sleep(backoff_delay(self.agent.settings, attempt))
        if await self.open():
            self.key = None  # a new session, never launched: nothing of it is worth keeping
            raise AgentUnavailable(
                f"{self.agent.provider}: the session was lost in a server restart", user_message=LOST
            )

    async def close(self) -> None:
        if self.socket is not None:
            socket, self.socket = self.socket, None
            await socket.close()

    @property
    def state(self) -> JSONDict:
        return {"sessionKey": self.key, "userID": self.user_id}

    @property
    def kept_state(self) -> JSONDict:
        """The state to keep after a failed turn: the session, unless it was never launched."""
        if self.key is None or (self.fresh and not self.acted):
            return {"userID": self.user_id}
        return self.state


class _Traces:
    """Maps one turn's traces to events: completions stream into the open message, the rest via rich."""

    def __init__(self, handoff_actions: Collection[str]) -> None:
        self.handoff_actions = handoff_actions
        self.ended = False
        self._open = False
        """A streamed message is open: the next TextDelta would extend it."""
        self._new_completion = False

    def mark(self) -> tuple[bool, bool, bool]:
        return self.ended, self._open, self._new_completion

    def restore(self, mark: tuple[bool, bool, bool]) -> None:
        """Back to `mark`, so a replayed action maps its traces as the first try did."""
        self.ended, self._open, self._new_completion = mark

    def events(self, trace: Mapping[str, Any]) -> list[AgentEvent]:
        kind, payload = trace["type"], trace.get("payload")
        if kind == "completion":
            state = payload.get("state") if isinstance(payload, Mapping) else None
            return self._completion(state, payload.get("content") if isinstance(payload, Mapping) else None)
        if kind in OLD_COMPLETION:
            state = kind.removeprefix("completion-")
            text = payload.get("completion") if isinstance(payload, Mapping) else None
            return self._completion("content" if state == "continue" else state, text)
        if kind == "no-reply":
            log.debug("ignoring a no-reply trace: the bot only speaks when spoken to")
        return self.emit(item_events(kind, payload, handoff_actions=self.handoff_actions))

    def _completion(self, state: Any, text: Any) -> list[AgentEvent]:
        if state not in ("start", "content", "end"):
            log.warning("skipping a completion trace in state %r", state)
            return []
        if state == "start":
            self._new_completion = True
        if not isinstance(text, str) or not text:
            return []
        separator = "\n\n" if self._open and self._new_completion else ""
        self._new_completion = False
        return self.emit([TextDelta(separator + text)])

    def emit(self, events: list[AgentEvent]) -> list[AgentEvent]:
        """Track whether a streamed message is open, and let the session end only once."""
        kept: list[AgentEvent] = []
        for event in events:
            if isinstance(event, SessionEnded):
                if self.ended:
                    continue
                self.ended = True
            elif isinstance(event, TextDelta):
                self._open = True
            elif not isinstance(event, HandoffRequested):
                self._open = False
            kept.append(event)
        return kept


class VoiceflowAgent(BaseAgent):
    def __init__(self, name: str, settings: VoiceflowSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.provider = f"voiceflow[{name}]"
        self.wire = _Redacting(WIRE_LOG, settings.api_key.get_secret_value())
        self._locks: MutableMapping[str, asyncio.Lock] = weakref.WeakValueDictionary()
        """One lock per session (by userID), alive only while a turn holds or waits for it."""

    def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        return self._turn(turn, _action_for(turn))

    def resume(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        """After a human handoff: `continue` the flow where the custom action paused it."""
        return self._turn(turn, CONTINUE)

    async def _turn(self, turn: Turn, action: JSONDict) -> AsyncIterator[AgentEvent]:
        """Run `action` on the turn's session, holding the session's lock for the whole exchange."""
        user_id, key = _stored(turn)
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            link = _Link(self, user_id, key)
            try:
                actions = _plan(action, new=await link.open())
                traces = _Traces(self.settings.handoff_actions)
                for index, step in enumerate(actions):
                    if traces.ended:
                        log.info(
                            "%s: session ended; %d action(s) not sent", self.provider, len(actions) - index
                        )
                        break
                    async for event in self._act(link, step, traces):
                        yield event
            except AgentError as error:
                error.provider_state = link.kept_state
                raise
            finally:
                await link.close()
        yield TurnEnd(link.state)

    async def _act(self, link: _Link, action: JSONDict, traces: _Traces) -> AsyncIterator[AgentEvent]:
        """Send one action and yield its reply; after `server.restart`, replay it without showing twice
        what the user already saw (see `_Shown`)."""
        shown = _Shown()
        for attempt in range(1, self.settings.max_attempts + 1):
            assert link.socket is not None
            mark = traces.mark()
            await link.socket.emit("action.send", {"action": action})
            link.acted = True
            log.debug("%s: sent a %r action", self.provider, action.get("type"))
            replies = with_timeouts(
                self._replies(link.socket, traces),
                first=self.settings.first_event_timeout,
                idle=self.settings.idle_timeout,
                provider=self.provider,
            )
            replay = shown.replay()
            try:
                async for events in replies:
                    for event in events:
                        if not replay.repeats(event):
                            shown.add(event)
                            yield event
                return
            except _ServerRestart as restart:
                if attempt == self.settings.max_attempts:
                    raise AgentUnavailable(f"{self.provider}: server restarted {attempt} times") from None
                log.warning("%s: server restarting; reconnecting to replay the action", self.provider)
                action = restart.action or action
                await link.reopen(attempt)
                traces.restore(mark)
                if streamed := shown.take_back_streamed():
                    yield Rewind(streamed)

    async def _replies(self, socket: _Socket, traces: _Traces) -> AsyncIterator[list[AgentEvent]]:
        """Events of the action in flight, one list per server event, until it completes.

        Runs inside the timeout wrapper, so any server event (even one that shows nothing) counts as a sign
        of life. Malformed events are logged and skipped.
        """
        message_id: Any = None
        while True:
            event, data = await socket.inbox.get()
            if event == "server.restart":
                action = data.get("action") if isinstance(data, Mapping) else None
                raise _ServerRestart(dict(action) if _is_action(action) else None)
            if event not in ("action.status", "action.trace", "session.ended"):
                socket.check(event, data)
                continue
            if not isinstance(data, Mapping):
                log.warning("%s: skipping a malformed %s event", self.provider, event)
                continue
            if message_id is not None and data.get("messageID") not in (None, message_id):
                log.info("%s: skipping an %s of another action", self.provider, event)
                continue
            if event == "action.trace":
                trace = data.get("trace")
                if isinstance(trace, Mapping) and isinstance(trace.get("type"), str):
                    yield traces.events(trace)
                else:
                    log.warning("%s: skipping a malformed trace", self.provider)
            elif event == "session.ended":
                yield traces.emit([SessionEnded(str(data.get("reason") or "the session ended"))])
                return
            else:
                match data.get("status"):
                    case "accepted":
                        message_id = data.get("messageID")
                    case "completed":
                        return
                    case "rejected":
                        raise self._rejected(str(data.get("reason", "")))
                    case status:
                        log.warning("%s: skipping action.status %r", self.provider, status)

    def _rejected(self, reason: str) -> AgentProtocolError:
        """The reason is for the log (scrubbed); the user is told what to do about it."""
        reason = self.wire.scrub(reason[:200])
        busy = any(word in reason.lower() for word in BUSY_REASONS)
        return AgentProtocolError(
            f"{self.provider}: action rejected: {reason!r}", user_message=BUSY if busy else REJECTED
        )

    def start_payload(self, user_id: str, key: str | None) -> JSONDict:
        settings = self.settings
        config: JSONDict = {"completionEvents": settings.completion_events, "audioEvents": False}
        if settings.user_timezone:
            config["userTimezone"] = settings.user_timezone
        payload: JSONDict = {
            "userID": user_id,
            "projectID": settings.project_id,
            "authorization": settings.api_key.get_secret_value(),
            "config": config,
        }
        if settings.environment_id:
            payload["environmentID"] = settings.environment_id
        if key:
            payload["sessionKey"] = key
        return payload


class _Shown:
    """What the user saw of one action's reply, so a replay after `server.restart` does not repeat it."""

    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    def add(self, event: AgentEvent) -> None:
        self.events.append(event)

    def take_back_streamed(self) -> int:
        """Forget the text streamed into the still open message, returning its length for a `Rewind`."""
        chars = 0
        while self.events and isinstance(self.events[-1], TextDelta | HandoffRequested):
            event = self.events.pop()
            chars += len(event.text) if isinstance(event, TextDelta) else 0
        return chars

    def replay(self) -> _Replay:
        return _Replay(tuple(self.events))


class _Replay:
    """Skips a replay's leading events that equal, in order, the ones already shown."""

    def __init__(self, seen: tuple[AgentEvent, ...]) -> None:
        self._seen = seen
        self._matched = 0

    def repeats(self, event: AgentEvent) -> bool:
        if self._matched < len(self._seen) and self._seen[self._matched] == event:
            self._matched += 1
            return True
        self._matched = len(self._seen)  # the replay went its own way: show the rest of it
        return False


def _action_for(turn: Turn) -> JSONDict:
    """A button sends back its own `request`; a start command (re)launches the flow; text goes as text."""
    if turn.button is not None and _is_action(turn.button.payload):
        return dict(turn.button.payload)
    text = turn.button.label if turn.button is not None else turn.text
    if text.strip().lower() in START_COMMANDS:
        return LAUNCH
    return {"type": "text", "payload": text}


def _plan(action: JSONDict, *, new: bool) -> list[JSONDict]:
    """A new session opens with `launch`, which is all that a start command or a resume needs there."""
    if not new:
        return [action]
    return [LAUNCH] if action in (LAUNCH, CONTINUE) else [LAUNCH, action]


def _is_action(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(value, Mapping) and isinstance(value.get("type"), str) and bool(value["type"])


def _stored(turn: Turn) -> tuple[str, str | None]:
    """The session's userID and sessionKey from the provider state, or a fresh userID for a new one."""
    user_id, key = turn.provider_state.get("userID"), turn.provider_state.get("sessionKey")
    if isinstance(user_id, str) and user_id:
        return user_id, key if isinstance(key, str) and key else None
    return f"{turn.platform}-{turn.user_id}-{uuid.uuid4().hex[:12]}", None
