"""A user edits or deletes a message they sent: what that changes.

Before its turn has started, the edit replaces the queued text, so the agent (or the moderators) get
what the user meant. After that it cannot change the answer: it is recorded in the transcript, and
during a handoff the moderators see it, since they may act on the old text: their copy of the message
is edited to match (bridges/mirror.py), or, when there is none (it was sent before the handoff, or was
too long for one message), they are shown the new text as a note.
"""

from __future__ import annotations

from bridges.conversations import Conversations
from bridges.copies import Origin, origin_of
from bridges.handoff import HandoffService
from bridges.inbox import Inbox, Receipt
from bridges.mirror import Mirror
from bridges.surface import Inbound
from models import ConversationStatus, Role

EDITED = "edited a message: {text}"
"""Shown in the desk after the user's name, and kept in the transcript."""


class Edits:
    def __init__(self, inbox: Inbox, conversations: Conversations, handoffs: HandoffService) -> None:
        self.inbox = inbox
        self.conversations = conversations
        self.handoffs = handoffs
        self.mirror = Mirror(handoffs)

    async def edited(self, inbound: Inbound) -> None:
        """`inbound` is the edited message as it reads now (its id is the original message's)."""
        receipt = Receipt(inbound.platform, inbound.chat_id, inbound.message_id)
        if await self.inbox.edit(receipt, inbound.text):
            return
        conversation, _ = await self.conversations.current(inbound)
        if conversation is None:
            return
        note = EDITED.format(text=inbound.text)
        await self.conversations.record(conversation.id, Role.SYSTEM, note, [inbound.message_id])
        if conversation.status not in (ConversationStatus.HANDOFF_REQUESTED, ConversationStatus.HUMAN):
            return
        if not await self.mirror.user_edited(origin_of(inbound), inbound.display_name, inbound.text):
            await self.handoffs.user_says(conversation.id, inbound.display_name, note)

    async def deleted(self, origin: Origin) -> None:
        """The transcript keeps what was said; the moderators' copies are marked deleted."""
        await self.mirror.user_deleted(origin)
