"""What a bridge hands the Relay: the message as `Inbound`, and the platform's primitives as a `Surface`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from agents.base import Attachment, Button, Media
from bridges.budget import RateBudget, acquire_all
from bridges.controls import Control
from bridges.split import Measure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """One user message (or button press), platform-neutral."""

    platform: str
    chat_id: str
    user_id: str
    display_name: str
    text: str
    message_id: str = ""
    thread_id: str = ""
    guild_id: str = ""
    is_dm: bool = False
    button: Button | None = None
    binding_scopes: tuple[tuple[str, str], ...] = ()
    """Where an agent binding may apply, most specific first, as (scope, id): the bridge knows its
    platform's places (a channel, then its server); the global scope comes last by itself."""
    attachments: tuple[Attachment, ...] = ()
    """Files sent with the message (the caption is `text`), in the order the platform lists them."""
    locale: str = ""
    """The user's language as the platform tells it (`de`, `pt-BR`); empty: the configured default.
    Everything said to the user about this message is in it (`bridges.catalogue`)."""


class SurfaceError(Exception):
    """A platform request failed. `permanent` means retrying the same request cannot succeed."""

    def __init__(self, detail: str, *, permanent: bool = False) -> None:
        super().__init__(detail)
        self.permanent = permanent


class Surface(Protocol):
    """The small set of platform primitives the renderer needs, bound to one chat or thread."""

    @property
    def max_length(self) -> int:
        """Longest message the platform accepts, in units of `measure`."""
        ...

    @property
    def measure(self) -> Measure: ...

    @property
    def edit_interval(self) -> float:
        """Seconds between two intermediate edits of one message."""
        ...

    @property
    def budgets(self) -> Sequence[RateBudget]:
        """Shared budgets a new message spends from (bot-wide, per chat, ...)."""
        ...

    @property
    def edit_budgets(self) -> Sequence[RateBudget]:
        """What an edit spends from: the same as `budgets` unless the platform counts edits apart."""
        ...

    @property
    def typing_budgets(self) -> Sequence[RateBudget]:
        """What the typing indicator spends from: a route of its own where the platform has one, so
        showing that a reply is coming never takes a slot its text needs."""
        ...

    @property
    def control_buttons(self) -> frozenset[Control]:
        """The reply controls whose buttons this surface shows and whose presses reach the Relay: Stop
        needs a message that can carry buttons while it streams (a Telegram draft cannot)."""
        ...

    async def send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        """Post a message; return its platform id."""
        ...

    async def edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        """`final`: the message will not change again, so a platform that streams drafts can post it
        for good in this one request."""
        ...

    async def send_media(self, media: Media) -> str: ...

    @property
    def max_upload(self) -> int:
        """The largest file, in bytes, `send_file` can post here."""
        ...

    async def send_file(self, file: Attachment, caption: str = "") -> str:
        """Upload a file (`data` loaded, at most `max_upload` bytes) with an optional caption."""
        ...

    async def typing(self) -> None:
        """Show that the bot is working; called again every few seconds until text arrives."""
        ...

    async def final_id(self, message_id: str) -> str:
        """The platform's id of the message `send` returned `message_id` for, once the reply is over: the
        same id, except where a surface streams a draft first (it posts the draft now). What the
        transcript keeps, so a later press on the message finds its reply (`final_id`)."""
        ...


SurfaceFactory = Callable[[str, str, str], Surface | None]
"""(platform, chat_id, thread_id) -> a surface to reach that chat, or None if this process has no bridge
for the platform. Used to speak to a user outside of a reply: handoff notices, crash recovery."""


async def send_notice(surface: Surface, text: str, buttons: Sequence[Button] = ()) -> bool:
    """Post a message outside a streamed reply (a notice, a moderator's words). It pays the surface's
    shared rate budgets like the renderer does, so a burst of notices cannot cause a 429 either.
    Returns False, logged, if the platform refused it."""
    await acquire_all(surface.budgets)
    try:
        await surface.send(text, buttons)
    except SurfaceError as exc:
        log.warning("could not post a notice: %s", exc)
        return False
    return True
