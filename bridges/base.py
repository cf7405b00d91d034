"""The contract every platform implements: a `Bridge` that bot.py starts, serves and closes alike, and the
`PlatformConfig` its section of the configuration is validated with.

A platform is a folder under bridges/ plus one line in bridges/registry.py; nothing outside its folder
names it. Its bridge turns platform events into `Inbound` for the Relay and hands out `Surface`s to reach
its chats; the Relay, renderer, handoff service and budgets never know which platform is behind them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # kept light: every platform's config module imports this one
    from bridges.moderator_desk import ModeratorDesk
    from bridges.surface import Surface
    from models import Conversation

log = logging.getLogger(__name__)


class PlatformConfig(BaseModel):
    """A platform's `[name]` section. Subclasses add their own keys; `edit_interval` is every platform's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edit_interval: float = Field(1.0, ge=0.01, le=10, description="seconds between two edits of one message")

    @property
    def has_desk(self) -> bool:
        """Whether this section sets up a moderator desk, where people can take handoffs."""
        return False

    max_choice_buttons: ClassVar[int | None] = None
    """The most buttons one message may carry here; None if the platform sets no limit."""

    def ping_problem(self, entry: str | int) -> str | None:
        """Why `entry` cannot be pinged on this platform's desk (an intake reason's ping), or None."""
        return "this platform's desk pings nobody"

    @property
    def unaddressed_text_hint(self) -> str | None:
        """None if the bot is given the text of messages not addressed to it (which trigger rules beyond
        mentions need); else what the operator must change so it is."""
        return None


class BridgeStartError(Exception):
    """A bridge could not log in or connect; the message is one line safe to show an operator."""


class Bridge(Protocol):
    """One platform in this process: started once, then serving until closed (or, for a bridge that can
    run out of input, like the console, until `finished` returns)."""

    platform: str
    desk: ModeratorDesk | None
    """The platform's moderator desk, if configured; registered with the handoff service after `start`."""

    async def start(self) -> None:
        """Log in and begin taking messages; raise `BridgeStartError` with one line if it cannot."""
        ...

    async def finished(self) -> None:
        """Return when the bridge has stopped serving by itself (never, for a chat platform)."""
        ...

    async def close(self, grace: float) -> None:
        """Take no new messages, let replies in progress finish within `grace` seconds, cut off the rest
        (each is reported to its user on the next start), and disconnect."""
        ...

    def surface_for(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        """Reach a chat outside of a reply (handoff words, crash recovery); None for another platform."""
        ...

    def jump_link(self, conversation: Conversation) -> str | None:
        """A link moderators can open to see the conversation where it happens, if the platform has one."""
        ...

    def healthy(self) -> bool:
        """Whether the bridge is connected and taking messages right now (for /healthz)."""
        ...


async def finish_in_flight(platform: str, tasks: Collection[asyncio.Task[Any]], grace: float) -> None:
    """Let the turns in progress finish within `grace` seconds, then cancel the rest: the same shutdown
    for every bridge, so no reply keeps running after its bridge has closed."""
    if not tasks:
        return
    _, late = await asyncio.wait(set(tasks), timeout=grace)
    if late:
        log.warning("%s: %d replies were cut off by the shutdown", platform, len(late))
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=1.0)


async def never() -> None:
    """`Bridge.finished` for a platform that serves until it is closed."""
    await asyncio.Event().wait()
