"""Moderators who reach a user first, the same on every platform: `/takeover` (join a user's live
conversation with the agent) and `/contact` (open one with a user who never asked).

Both open a case already claimed by the moderator, shown on every desk like any other case (its thread
or topic, its buttons, its tools), so the moderator talks through it and hands back or closes as usual.
A takeover stops the reply the agent may be streaming (its text so far stays) and tells the user a
moderator joined. A user has at most one open case: if they already have one, a takeover claims it when
nobody holds it, and otherwise says who does.

Bridges decide who may do this and where (desk moderators, from the desk), name the user, and for
`/contact` reach their private chat; this module does the rest and answers in words for the moderator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import and_, or_, select

from bridges.catalogue import Strings
from bridges.handoff_notices import UserNotices
from bridges.moderation import Moderator, Target
from bridges.outage import survives_db_outage
from bridges.relay import Relay
from bridges.surface import Inbound
from models import (
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffStatus,
    Role,
    TranscriptEntry,
    User,
)
from models.queries import open_handoff_id_of

log = logging.getLogger(__name__)

TAKEOVER, CONTACT = "takeover", "contact"
"""`Handoff.requested_by` of the cases a moderator opened; desks say so on the notification."""

Greet = Callable[[str], Awaitable[str | None]]
"""Post this intro in the user's private chat; None once it is there, else why not, in words for the
moderator (the platform's own reason: direct messages closed, the bot never started or blocked)."""


class TakeoverWords(Strings, key="takeover.desk"):
    """What /takeover and /contact answer the moderator, and the reasons the cases show."""

    taken = "You took over the conversation with {user}: case #{id}. What you write in it now goes to them."
    contacted = "{user} was told you would like to talk: case #{id}. Their replies arrive there."
    no_conversation = (
        "{user} has no conversation with the assistant to take over. Use /contact to write to them first."
    )
    yours_already = "You already hold {user}'s case #{id}."
    held_by = "{name} already holds {user}'s case #{id}: ask them, or have it transferred to you."
    blocked = "{user} is blocked, so nothing they send would reach you. Unblock them first."
    taken_reason = "taken over by {name}"
    contact_reason = "{name} opened a conversation with the user"


class TakeoverNotices(Strings, key="takeover.user"):
    """What the user is told when a moderator writes first."""

    intro = "Hello! {name} (a moderator) would like to talk with you. Reply here and they will read it."


@dataclass(frozen=True)
class Opened:
    handoff_id: int
    new: bool
    """False if the user had an open case already (opened meanwhile, elsewhere): nothing was opened."""


class Takeovers:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.handoffs = relay.handoffs

    @property
    def outage_grace(self) -> float:
        return self.relay.outage_grace

    @property
    def words(self) -> TakeoverWords:
        """What moderators are answered, in the desks' language."""
        return self.handoffs.catalogue.desk(TakeoverWords)

    async def take_over(
        self, moderator: Moderator, target: Target, places: Sequence[tuple[str, str]] = ()
    ) -> str:
        """Take over the user's conversation in one of `places` (chat id, thread id), when a message named
        it, else their latest one on the platform; answer the moderator."""
        target = await self.named(target)
        who = target.name or str(target)
        if (instead := await self._instead(moderator, target)) is not None:
            return instead
        conversation_id = await self._conversation_of(target, places)
        if conversation_id is None:
            return self.words.no_conversation.format(user=who)
        reason = self.words.taken_reason.format(name=moderator.name)
        opened = await self._open(conversation_id, moderator, TAKEOVER, reason)
        if not opened.new:
            return await self._join(opened.handoff_id, moderator, target)
        await self.handoffs.opened(opened.handoff_id)
        await self.relay.takeovers.stop(conversation_id)
        user_words = await self.handoffs.user_words(opened.handoff_id)
        await self.handoffs.tell_user(
            opened.handoff_id, user_words(UserNotices).claimed.format(name=moderator.name)
        )
        await self._audit(f"🎧 {moderator} took over the conversation of {target}", opened, moderator)
        return self.words.taken.format(user=who, id=opened.handoff_id)

    async def contact(self, moderator: Moderator, target: Target, private: Inbound, greet: Greet) -> str:
        """Write first to a user in their private chat (`private` names it, as a message there would),
        then open a case there, claimed by the moderator. The user's reply waits in line until the case
        is open, so it reaches the moderator. Nothing is opened if the platform would not deliver."""
        target = await self.named(target)
        if (instead := await self._instead(moderator, target)) is not None:
            return instead
        with self.relay.line_up(private) as place:
            await place.turn()
            words = self.relay.catalogue.words(private.locale or await self._language_of(target))
            intro = words(TakeoverNotices).intro.format(name=moderator.name)
            refused = await greet(intro)
            if refused is not None:
                log.info("%s could not contact %s: %s", moderator, target, refused)
                return refused
            conversation = await self.relay.conversations.open_for(private, self.relay.policy.idle_timeout)
            reason = self.words.contact_reason.format(name=moderator.name)
            opened = await self._open(conversation.id, moderator, CONTACT, reason, said=intro)
        if not opened.new:
            return await self._join(opened.handoff_id, moderator, target)
        await self.handoffs.opened(opened.handoff_id)
        await self._audit(f"📨 {moderator} contacted {target}", opened, moderator)
        return self.words.contacted.format(user=target.name or str(target), id=opened.handoff_id)

    async def _instead(self, moderator: Moderator, target: Target) -> str | None:
        """The answer when no case is to be opened: the user is blocked, or has an open case already."""
        if await self.relay.is_blocked(target.platform, target.user_id):
            return self.words.blocked.format(user=target.name or str(target))
        case = await self._open_case_of(target)
        return await self._join(case, moderator, target) if case is not None else None

    async def _join(self, handoff_id: int, moderator: Moderator, target: Target) -> str:
        """The user has an open case already: claim it if nobody holds it (a takeover of a waiting
        request), else say who does."""
        who = target.name or str(target)
        outcome = await self.handoffs.claim(handoff_id, moderator.id, moderator.name)
        if outcome.won:
            await self.relay.takeovers.stop(await self._conversation_of_case(handoff_id))
            await self.handoffs.audit(
                f"🎧 {moderator} took over {target} by claiming case #{handoff_id} in {moderator.where}."
            )
            return self.words.taken.format(user=who, id=handoff_id)
        if outcome.claimer_name is None:  # closed meanwhile: let them try again on a fresh state
            return self.words.no_conversation.format(user=who)
        async with self.relay.db() as session:
            holder = await session.scalar(select(Handoff.claimed_by).where(Handoff.id == handoff_id))
        if holder == moderator.id:
            return self.words.yours_already.format(user=who, id=handoff_id)
        return self.words.held_by.format(name=outcome.claimer_name, user=who, id=handoff_id)

    async def _audit(self, done: str, opened: Opened, moderator: Moderator) -> None:
        await self.handoffs.audit(f"{done} (case #{opened.handoff_id}) in {moderator.where}.")

    @survives_db_outage
    async def named(self, target: Target) -> Target:
        """`target` with the name we know them by, when the moderator gave only an id (kept if unknown)."""
        if target.name:
            return target
        async with self.relay.db() as session:
            name = await session.scalar(
                select(User.display_name).where(
                    User.platform == target.platform, User.external_id == target.user_id
                )
            )
        return replace(target, name=name or "")

    @survives_db_outage
    async def _language_of(self, target: Target) -> str | None:
        """The language of the user's latest conversation, if they ever had one (else the default)."""
        async with self.relay.db() as session:
            return await session.scalar(
                select(Conversation.locale)
                .join(User, User.id == Conversation.user_id)
                .where(User.platform == target.platform, User.external_id == target.user_id)
                .order_by(Conversation.id.desc())
                .limit(1)
            )

    @survives_db_outage
    async def _open_case_of(self, target: Target) -> int | None:
        async with self.relay.db() as session:
            return await session.scalar(open_handoff_id_of(target.platform, target.user_id))

    @survives_db_outage
    async def _conversation_of(self, target: Target, places: Sequence[tuple[str, str]]) -> int | None:
        """The user's live conversation in one of `places`, or with none given their latest anywhere on
        the platform."""
        query = (
            select(Conversation.id)
            .join(User, User.id == Conversation.user_id)
            .where(
                User.platform == target.platform,
                User.external_id == target.user_id,
                Conversation.platform == target.platform,
                Conversation.status != ConversationStatus.CLOSED,
            )
            .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
            .limit(1)
        )
        if places:
            query = query.where(
                or_(
                    *(
                        and_(Conversation.chat_id == chat, Conversation.thread_id == thread)
                        for chat, thread in places
                    )
                )
            )
        async with self.relay.db() as session:
            return await session.scalar(query)

    async def _conversation_of_case(self, handoff_id: int) -> int:
        async with self.relay.db() as session:
            return (await session.get_one(Handoff, handoff_id)).conversation_id

    @survives_db_outage
    async def _open(
        self, conversation_id: int, moderator: Moderator, kind: str, reason: str, *, said: str = ""
    ) -> Opened:
        """One transaction: a case on the conversation, claimed by the moderator, unless the user has an
        open case already (their row is locked while this looks, as for a request for a human)."""
        now = self.handoffs.now()
        async with self.relay.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            user = await session.scalar(select(User).where(User.id == conversation.user_id).with_for_update())
            assert user is not None
            existing = await session.scalar(open_handoff_id_of(user.platform, user.external_id))
            if existing is not None:
                return Opened(existing, new=False)
            handoff = Handoff(
                conversation_id=conversation_id,
                status=HandoffStatus.CLAIMED,
                reason=reason,
                requested_by=kind,
                requested_at=now,
                claimed_by=moderator.id,
                claimed_by_name=moderator.name,
                claimed_at=now,
            )
            session.add(handoff)
            conversation.status = ConversationStatus.HUMAN
            conversation.closed_at = None
            conversation.last_activity_at = now
            session.add(
                TranscriptEntry(
                    conversation_id=conversation_id,
                    role=Role.SYSTEM,
                    text=f"{kind} by {moderator.name}",
                    author_id=moderator.id,
                )
            )
            if said:
                said_by = moderator.id
                session.add(
                    TranscriptEntry(
                        conversation_id=conversation_id, role=Role.MODERATOR, text=said, author_id=said_by
                    )
                )
            await session.flush()
            handoff_id = handoff.id
        log.info("conversation %s: case %s opened by %s (%s)", conversation_id, handoff_id, moderator, kind)
        return Opened(handoff_id, new=True)
