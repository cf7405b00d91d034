"""Edits and deletions during a handoff, shown on the other side, as Modmail does.

Each message passed across a handoff leaves a `MessageCopy` row: a user's message and its copy in each
desk's thread or topic, a moderator's reply and its copy in the user's chat. When the original is edited
the copy is edited to match, marked "(edited)"; when it is deleted the copy is marked deleted rather
than removed, so moderators keep the context (the transcript keeps the words either way). Telegram
never tells bots of deletions, so only Discord's are mirrored.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from bridges.budget import acquire_all
from bridges.copies import Origin, desk_side
from bridges.handoff import HandoffService
from bridges.handoff_notices import UserNotices
from bridges.surface import SurfaceError
from models import OPEN_HANDOFF_STATUSES, Conversation, Handoff, MessageCopy, Role, TranscriptEntry

log = logging.getLogger(__name__)

EDITED = "{text} (edited)"
USER_DELETED = "🗑 deleted this message"
"""The desk copy of a message its user deleted (after the user's name, as their messages are)."""
MODERATOR_DELETED = "The moderator deleted this message."
"""The user's copy of a reply its moderator deleted."""


class Mirror:
    """Carries an edit or a deletion over to the copies of a message in an open handoff."""

    def __init__(self, handoffs: HandoffService) -> None:
        self.handoffs = handoffs

    async def user_edited(self, origin: Origin, author: str, text: str) -> bool:
        """Edit the desk copies of a user's message; False if it has none in an open handoff."""
        return await self._to_desks(origin, author, EDITED.format(text=text))

    async def user_deleted(self, origin: Origin) -> bool:
        return await self._to_desks(origin, None, USER_DELETED)

    async def moderator_edited(self, origin: Origin, author: str, text: str) -> bool:
        """Edit the user's copy of a moderator's plain reply, under the name it was sent with."""
        policy = self.handoffs.policy
        edited = EDITED.format(text=text)
        found = await self._copies(origin)
        if not found:
            return False
        say = (await self.handoffs.user_words(found[0][1].id))(UserNotices)  # one user: the case's
        if policy.anonymous_replies:
            line = say.from_staff.format(name=policy.staff_name, text=edited)
        else:
            line = say.from_moderator.format(name=author, text=edited)
        return await self._to_user(origin, line, f"{author} edited a reply: {text}")

    async def moderator_deleted(self, origin: Origin) -> bool:
        return await self._to_user(origin, MODERATOR_DELETED, "a moderator deleted a reply")

    async def _to_desks(self, origin: Origin, author: str | None, text: str) -> bool:
        """`author` None: the user's name as the handoff shows it (a deletion does not say who)."""
        found = await self._copies(origin)
        for copy, handoff in found:
            if author is None:
                author = (await self.handoffs.view(handoff.id)).user_name
            desk = next((d for d in self.handoffs.desks if desk_side(d.name) == copy.copy_side), None)
            refs = handoff.notification_refs.get(desk.name) if desk else None
            if desk is None or refs is None:
                continue
            try:
                await desk.edit(refs, copy.copy_message, author, text)
            except Exception:
                log.exception("handoff %s: could not mirror an edit to desk %s", handoff.id, desk.name)
        return bool(found)

    async def _to_user(self, origin: Origin, text: str, record: str) -> bool:
        """Show `text` in place of the user's copy; `record` goes in the transcript."""
        found = await self._copies(origin)
        for copy, handoff in found:
            async with self.handoffs.db.begin() as session:
                conversation = await session.get_one(Conversation, handoff.conversation_id)
                session.add(TranscriptEntry(conversation_id=conversation.id, role=Role.SYSTEM, text=record))
            if copy.copy_side != conversation.platform:
                continue
            surface = self.handoffs.surface_for(
                conversation.platform, conversation.chat_id, conversation.thread_id
            )
            if surface is None:  # another process serves the user's platform
                continue
            await acquire_all(surface.edit_budgets)
            try:
                await surface.edit(copy.copy_message, text, final=True)
            except SurfaceError as exc:
                log.warning("handoff %s: could not mirror a moderator's edit: %s", handoff.id, exc)
        return bool(found)

    async def _copies(self, origin: Origin) -> list[tuple[MessageCopy, Handoff]]:
        async with self.handoffs.db() as session:
            rows = await session.execute(
                select(MessageCopy, Handoff)
                .join(Handoff, Handoff.id == MessageCopy.handoff_id)
                .where(
                    MessageCopy.origin == origin.side,
                    MessageCopy.origin_chat == origin.chat,
                    MessageCopy.origin_message == origin.message,
                    Handoff.status.in_(OPEN_HANDOFF_STATUSES),
                )
            )
            return [(copy, handoff) for copy, handoff in rows]
