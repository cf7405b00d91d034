"""The one interface every provider backend implements, and the neutral events it yields.

Agents never know which platform is in front of them: a turn comes in as a `Turn`, the reply goes out
as a stream of frozen event dataclasses that always ends with `TurnEnd`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class Button:
    """A choice offered to the user. `payload` is what goes back to the provider when it is pressed."""

    label: str
    payload: JSONDict = field(default_factory=dict)
    url: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One earlier transcript line, for stateless providers that need the conversation replayed."""

    role: Literal["user", "agent", "moderator"]
    text: str


AttachmentKind = Literal["image", "document", "audio", "voice", "video", "sticker"]


class AttachmentUnavailable(Exception):
    """The platform would not serve a file (gone, a network error); the message is one line for the
    logs, never a URL with a token in it."""


class AttachmentBeyondPlatform(AttachmentUnavailable):
    """The platform lets bots download files up to `limit` bytes only (Telegram: 20 MB), and this one is
    larger: the user is told that limit, not the receiving side's."""

    def __init__(self, detail: str, limit: int) -> None:
        super().__init__(detail)
        self.limit = limit


class AttachmentTooLarge(AttachmentUnavailable):
    """The file is larger than the caller allowed; nothing past the limit was downloaded."""


Fetch = Callable[[int], Awaitable[bytes]]
"""Download a file's bytes, at most `max_bytes` of them: raises `AttachmentTooLarge` past that (without
reading on) and `AttachmentUnavailable` when the platform will not serve it."""


async def _nothing(max_bytes: int) -> bytes:
    raise AttachmentUnavailable("no way to download this file")


@dataclass(frozen=True)
class Attachment:
    """A file the user sent, platform-neutral. `fetch` downloads it (bounded); `data` is set once it
    was fetched for an agent, so agents never download anything themselves."""

    kind: AttachmentKind
    mime: str
    size: int | None
    """Bytes, as the platform states it (None when it does not say)."""
    name: str
    fetch: Fetch = field(default=_nothing, repr=False, compare=False)
    duration: float | None = None
    """Seconds, for audio, voice notes and videos."""
    emoji: str = ""
    """A sticker's emoji: the words a sticker stands for."""
    data: bytes | None = field(default=None, repr=False)

    def loaded(self, data: bytes) -> Attachment:
        return replace(self, data=data, size=len(data))

    def metadata(self) -> dict[str, Any]:
        """What the transcript keeps: never the bytes, never a download URL (it may carry a token)."""
        kept: dict[str, Any] = {"kind": self.kind, "mime": self.mime, "size": self.size, "name": self.name}
        if self.duration is not None:
            kept["duration"] = self.duration
        if self.emoji:
            kept["emoji"] = self.emoji
        return kept


@dataclass(frozen=True)
class MediaSupport:
    """What an agent takes besides text (`AcceptsMedia.media`); all zero means text only."""

    max_images: int = 0
    max_image_bytes: int = 0
    max_text_files: int = 0
    max_text_bytes: int = 0
    """Text files (plain text, code, CSV, JSON...) are put inline in the user's message."""
    image_types: frozenset[str] = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
    """Image formats the provider reads (OpenAI's vision models: these four); others are named as not
    passed on, so one HEIC photo cannot fail the whole turn."""


TEXT_ONLY = MediaSupport()


@runtime_checkable
class AcceptsMedia(Protocol):
    """An agent that takes some attachments; every other agent gets text only."""

    @property
    def media(self) -> MediaSupport: ...


@dataclass(frozen=True)
class Turn:
    """What the user did: typed `text`, or pressed `button` (whose payload the provider expects back)."""

    text: str
    user_id: str
    display_name: str
    platform: str
    provider_state: Mapping[str, Any]
    button: Button | None = None
    history: tuple[HistoryEntry, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    """Fetched (`data` set), and only those the agent's `MediaSupport` said it takes."""


@dataclass(frozen=True)
class TextDelta:
    """A streamed fragment appended to the message being written."""

    text: str


@dataclass(frozen=True)
class Media:
    url: str
    kind: Literal["image", "video", "audio", "file"] = "image"
    caption: str = ""


@dataclass(frozen=True)
class Message:
    """A whole message; it closes any message that was being streamed with `TextDelta`s."""

    text: str
    buttons: tuple[Button, ...] = ()
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class Buttons:
    buttons: tuple[Button, ...]


@dataclass(frozen=True)
class Sources:
    urls: tuple[str, ...]


@dataclass(frozen=True)
class HandoffRequested:
    reason: str


@dataclass(frozen=True)
class SessionEnded:
    reason: str


@dataclass(frozen=True)
class Rewind:
    """Take back the last `chars` characters streamed into the open message: the provider is sending
    that part of the reply again (Voiceflow replays an action after `server.restart`)."""

    chars: int


@dataclass(frozen=True)
class Usage:
    """Tokens a provider says one turn cost, where its protocol reports them (quotas and metrics)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class TurnEnd:
    """Always the last event: the provider state the session must keep for the next turn."""

    provider_state: JSONDict
    usage: Usage | None = None
    """What the turn cost, when the provider reports it (None: not reported)."""


AgentEvent = (
    TextDelta | Rewind | Message | Buttons | Media | Sources | HandoffRequested | SessionEnded | TurnEnd
)


class AgentError(Exception):
    """Base of every provider failure. `user_message` is safe to show a user; `str(err)` is for logs.

    `provider_state` is the session the provider had opened when the turn failed (None: keep what was
    stored). A failed first turn must not lose it, or the next message would start over with a greeting.
    """

    default_user_message = "The assistant had a problem answering. Please try again in a moment."

    def __init__(self, detail: str, *, user_message: str | None = None) -> None:
        super().__init__(detail)
        self.user_message = user_message or self.default_user_message
        self.provider_state: JSONDict | None = None


class AgentUnavailable(AgentError):
    default_user_message = (
        "The assistant is unreachable right now. Your message is saved; please try again soon."
    )


class AgentRateLimited(AgentError):
    default_user_message = "The assistant is busy right now. Please try again in a minute."

    def __init__(
        self, detail: str, *, retry_after: float | None = None, user_message: str | None = None
    ) -> None:
        super().__init__(detail, user_message=user_message)
        self.retry_after = retry_after


class AgentProtocolError(AgentError):
    default_user_message = "The assistant sent something I could not understand. Please try again."


class AgentRequestRefused(AgentProtocolError):
    """The provider refused a request we built (an HTTP 400 or 422): a bug on our side, not the agent's."""

    default_user_message = (
        "I sent the assistant something it could not accept; this is a bug on our side, "
        "and it has been logged."
    )


class AgentAuthError(AgentError):
    default_user_message = (
        "The assistant is misconfigured. An operator has been told; please try again later."
    )


@runtime_checkable
class Agent(Protocol):
    """A provider backend. Built from its config section; used as an async context manager."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        """Yield the reply's events, ending with `TurnEnd`; raise an `AgentError` on failure."""
        ...


@runtime_checkable
class Resumable(Protocol):
    """An agent whose conversation can be told that the bot is back after a human handoff."""

    def resume(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        """Like `stream`, for the moment a moderator hands the user back (Voiceflow: a `continue` action).

        `turn.text` is empty; the events are the agent's first words after the handoff.
        """
        ...


@runtime_checkable
class Regenerable(Protocol):
    """An agent that can be asked the same turn again for a different reply: its provider keeps no state
    of its own (OpenAI-compatible: the history is ours), so the turn replays with the history that came
    before it, the reply being replaced left out."""

    def regenerate(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        """Like `stream`, for a turn asked again; `turn.history` ends before the reply it replaces."""
        ...


class BaseAgent:
    """Lifecycle defaults for agents that hold no connection of their own."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class AgentSettings(BaseModel):
    """Base of every `[agents.NAME]` section: unknown keys are errors, `kind` picks the backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
