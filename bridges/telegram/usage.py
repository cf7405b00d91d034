"""`/usage` on Telegram: what a user has used of the assistant (everywhere, and in this chat together
with everyone else) against the quotas; for admins, what someone else has used.

Someone else is named as a reply to their message or by their id (`/usage 123`). That is for the bot's
configured admins anywhere, and for a group's own administrators in that group (authority is where the
command is used). The user's own usage is asked through admission like a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from telegram import Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bridges.moderation import USER_ID
from bridges.notices import Notices
from bridges.outage import DatabaseUnavailable
from bridges.quotas import Keys, QuotaNotices
from bridges.relay import Relay
from bridges.surface import Inbound, send_notice
from bridges.telegram.surface import Surfaces

log = logging.getLogger(__name__)

GROUP_ADMINS = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})


class UsageCommand:
    def __init__(
        self,
        relay: Relay,
        surfaces: Surfaces,
        admins: Collection[int],
        inbound_of: Callable[[Message, str], Inbound],
    ) -> None:
        self.relay = relay
        self.surfaces = surfaces
        self.admins = admins
        self.inbound_of = inbound_of
        """The handlers' `Inbound` of a message: who sent it (a sender chat included), where."""

    async def usage(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None:
            return
        surface = self.surfaces.plain(message)
        asking = self.inbound_of(message, "/usage")
        words = self.relay.words(asking)
        say = words(QuotaNotices)
        whom = self._whom(message, context.args or [])
        if whom is not None and not await self._may_see_others(message, context):
            await send_notice(surface, say.not_admin)
            return
        refusal = await self.relay.admission(asking)
        if refusal is not None:
            if refusal.notice is not None:
                await send_notice(surface, refusal.notice)
            return
        if whom is None:
            keys, label = Keys.of(asking), say.report_you
        else:  # in a private chat the place would be the admin's own chat with the bot: left out
            place = asking.binding_scopes if message.chat.type != ChatType.PRIVATE else ()
            keys, label = Keys.at(asking.platform, whom[0], place), whom[1]
        try:
            reply = await self.relay.quotas.report(keys, say, user_label=label)
        except DatabaseUnavailable:
            reply = words(Notices).db_unavailable
        await send_notice(surface, reply)

    def _whom(self, message: Message, args: list[str]) -> tuple[str, str] | None:
        """(id, name) of someone other than the sender named by the command, else None."""
        own = self.inbound_of(message, "").user_id
        if args and USER_ID.fullmatch(args[0]):
            return (args[0], args[0]) if args[0] != own else None
        replied = message.reply_to_message
        if replied is None or replied.forum_topic_created is not None or replied.from_user is None:
            return None  # in a topic every message "replies" to the topic's start, which names nobody
        if replied.from_user.is_bot and replied.sender_chat is None:
            return None
        sender = self.inbound_of(replied, "")
        return (sender.user_id, sender.display_name) if sender.user_id != own else None

    async def _may_see_others(self, message: Message, context: ContextTypes.DEFAULT_TYPE) -> bool:
        """A configured admin anywhere; a group's creator or administrators in that group."""
        user_id = message.from_user.id if message.from_user is not None else 0
        if message.sender_chat is None and user_id in self.admins:
            return True
        if message.chat.type == ChatType.PRIVATE or message.sender_chat is not None:
            return False
        try:
            member = await context.bot.get_chat_member(message.chat.id, user_id)
        except TelegramError as exc:
            log.warning("telegram: could not check an admin for /usage: %s", type(exc).__name__)
            return False
        return member.status in GROUP_ADMINS
