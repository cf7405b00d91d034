"""A user edits a message they sent: what that changes.

Before its turn has started, the edit replaces the queued text, so the agent (or the moderators) get
what the user meant. After that it cannot change the answer: it is recorded in the transcript, and
during a handoff the moderators are shown the new text, since they may act on the old one.
"""

from __future__ import annotations

from bridges.conversations import Conversations
from bridges.handoff import HandoffService
from bridges.inbox import Inbox, Receipt
from bridges.surface import Inbound
from models import ConversationStatus, Role

EDITED = "edited a message: {text}"
"""Shown in the desk after the user's name, and kept in the transcript."""


class Edits:
    def __init__(self, inbox: Inbox, conversations: Conversations, handoffs: HandoffService) -> None:
        self.inbox = inbox
        self.conversations = conversations
        self.handoffs = handoffs

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
        if conversation.status in (ConversationStatus.HANDOFF_REQUESTED, ConversationStatus.HUMAN):
            await self.handoffs.user_says(conversation.id, inbound.display_name, note)
