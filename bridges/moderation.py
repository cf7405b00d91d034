"""`/block` and `/unblock`, the same on every platform: whom, for how long, why, and a desk log line.

Bridges decide who may use them, and where (the desk's own server or chat: a block is global), then
name the target; this module does the rest and says what changed, in words for the moderator.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridges.blocks import Block
from bridges.catalogue import Strings
from bridges.relay import Relay

log = logging.getLogger(__name__)

USER_ID = re.compile(r"-?[0-9]{1,20}")
"""A user id as moderators give it (Telegram's sender chats are negative)."""


class Replies(Strings, key="moderation"):
    blocked = "Blocked {who} {how_long}: everything they send is ignored."
    blocked_already = (
        "{who} is already blocked, {how_long} (set by {by} on {since}).{reason} To change it, give a "
        "duration or a reason."
    )
    block_changed = "Changed the block of {who}: now {how_long}."
    unblocked = "Unblocked {who}: the bot answers them again."
    unblocked_already = "{who} was not blocked."
    reason = " Reason: {reason}"
    handoff_stays = (
        " Their handoff #{id} stays open, but what they send no longer reaches it: "
        "resolve or return it when you are done."
    )
    bad_duration = (
        "I could not read “{word}” as a duration: use for example 30m, 2h, 7d or 1w (at most 10 years)."
    )


@dataclass(frozen=True)
class Target:
    """Whom a `/block` or `/unblock` is about."""

    platform: str
    user_id: str
    name: str = ""
    handoff_id: int | None = None
    """Their open handoff, when the command was used in its thread or topic."""

    def __str__(self) -> str:
        who = f"{self.platform} user {self.user_id}"
        return f"{self.name} ({who})" if self.name else who


@dataclass(frozen=True)
class Moderator:
    id: str
    """platform:user id"""
    name: str
    where: str
    """Where the command was used, for the log: "discord server 1 channel 2"."""

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Moderation:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    @property
    def words(self) -> Replies:
        """What moderators are told, in the desks' language (read each time: a reload may change it)."""
        return self.relay.catalogue.desk(Replies)

    async def block(
        self,
        target: Target,
        who: str,
        moderator: Moderator,
        duration: timedelta | None,
        reason: str,
        *,
        show_reason: bool = True,
    ) -> str:
        """Block; a user already blocked gets the new terms if any are given, else the moderator learns
        by whom, until when and why. `who` is the target as the platform shows it; `show_reason=False`
        where the person blocked might read the answer (the desk log has it anyway)."""
        relay = self.relay
        current = await relay.blocks.active(target.platform, target.user_id)
        if current is not None and duration is None and not reason:
            return self.words.blocked_already.format(
                who=who,
                how_long=_how_long(current),
                by=current.by,
                since=_when(current.since),
                reason=self.words.reason.format(reason=current.reason) + "."
                if current.reason and show_reason
                else "",
            )
        until = relay.blocks.now() + duration if duration is not None else None
        block = await relay.blocks.block(
            target.platform, target.user_id, by=moderator.id, until=until, reason=reason
        )
        done = "changed the block of" if current is not None else "blocked"
        await relay.handoffs.audit(
            f"🚫 {moderator} {done} {target} {_how_long(block)} in {moderator.where}."
            + (self.words.reason.format(reason=reason) if reason else " No reason given.")
        )
        answer = self.words.block_changed if current is not None else self.words.blocked
        reply = answer.format(who=who, how_long=_how_long(block))
        if reason and show_reason:
            reply += self.words.reason.format(reason=reason)
        handoff_id = target.handoff_id or await relay.open_handoff_of_user(target.platform, target.user_id)
        return reply + (self.words.handoff_stays.format(id=handoff_id) if handoff_id is not None else "")

    async def unblock(self, target: Target, who: str, moderator: Moderator) -> str:
        lifted = await self.relay.blocks.unblock(target.platform, target.user_id)
        if lifted is None:
            return self.words.unblocked_already.format(who=who)
        await self.relay.handoffs.audit(
            f"✅ {moderator} unblocked {target} in {moderator.where} (blocked by {lifted.by} on "
            f"{_when(lifted.since)}, {_how_long(lifted)}"
            + (f"; reason: {lifted.reason})." if lifted.reason else ").")
        )
        return self.words.unblocked.format(who=who)


def _how_long(block: Block) -> str:
    if block.until is None:
        return "until someone uses /unblock"
    return f"until {_when(block.until)} (or /unblock)"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"
