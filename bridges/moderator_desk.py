"""What a moderator desk is, to the handoff: the `ModeratorDesk` protocol each platform's desk
implements (a Discord channel with a thread per case, a Telegram forum with a topic per case), and the
`HandoffView` it is shown. Desks render the view their own way; the service never names a platform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.base import Attachment
from bridges.cases import PastCase
from models import Conversation, HandoffStatus


@dataclass(frozen=True)
class HandoffView:
    """Everything a moderator notification shows; desks render it their own way."""

    handoff_id: int
    status: HandoffStatus
    platform: str
    user_name: str
    user_id: str
    reason: str
    recent: tuple[tuple[str, str], ...]
    """The last transcript entries as (role, text), oldest first."""
    jump_url: str | None
    claimed_by_name: str | None
    closed_by: str | None
    escalated: bool
    earlier_cases: int = 0
    """How many cases the user had before this one."""
    history: tuple[PastCase, ...] = ()
    """The newest of those, newest first."""
    requested_by: str = "user"
    """Who opened it: "user", "agent", or a moderator ("takeover", "contact": bridges/takeover.py)."""
    intake_label: str | None = None
    """The reason the user chose from the intake menu, if it was shown."""
    priority: str | None = None
    """That reason's priority."""
    pings: Mapping[str, tuple[str | int, ...]] = field(default_factory=dict)
    """Whom each desk (by name) pings for this case instead of its own ping: the reason's `ping`."""
    overdue: bool = False
    """It passed its first-response target ([handoff.sla]) before a moderator's first reply."""


@dataclass(frozen=True)
class ClaimOutcome:
    won: bool
    claimer_name: str | None
    """Who holds the claim now (the caller if it won); None if the handoff is no longer open."""


class ModeratorDesk(Protocol):
    """One moderator destination: a Discord channel with a thread per handoff, or a Telegram forum topic."""

    name: str
    place_keys: tuple[str, ...]
    """The refs entries (a thread id, a topic) that `open_handoff_at` finds a handoff by; each value is
    unique to one handoff on this desk."""
    upload_limit: int
    """The largest file, in bytes, the desk can post."""

    async def open(self, view: HandoffView) -> dict[str, Any]:
        """Post the notification; return what is needed to find it again (stored in the database)."""
        ...

    async def update(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        """Show the new state (claimer, closed) on the notification."""
        ...

    async def post(self, refs: Mapping[str, Any], author: str, text: str) -> str | None:
        """Relay a user's message into the handoff's thread or topic; return the id of its copy when it
        fit in one message (what `edit` can change), else None."""
        ...

    async def edit(self, refs: Mapping[str, Any], message_id: str, author: str, text: str) -> None:
        """Change a copy `post` made to show `text` (the user edited or deleted their message)."""
        ...

    async def post_file(self, refs: Mapping[str, Any], author: str, file: Attachment) -> None:
        """Post a user's file (`data` loaded) in the handoff's thread or topic; `SurfaceError` if refused."""
        ...

    async def note(self, refs: Mapping[str, Any], text: str) -> None:
        """Tell the moderators something in the handoff's thread or topic (plain text, shown as is)."""
        ...

    async def log(self, view: HandoffView, summary: str, transcript: str | None) -> None:
        """Post a transition to the log destination, with the transcript as a file when given."""
        ...

    async def overdue(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        """The case passed its first-response target: mark the notification, and ping (once; the
        service calls this once per case)."""
        ...

    async def audit(self, summary: str) -> None:
        """Post a moderator action that is not about one handoff (a block) to the log destination."""
        ...


JumpLink = Callable[[Conversation], str | None]
