"""Rating presses on Telegram: the stars, answered in the press's own popup, then a reply for the comment.

After the stars, the question's message shows the result and, in a private chat, a ForceReply prompt asks
for a comment: the user's app opens a reply to it, and that reply is taken as the comment (never sent to
the agent). Which case a reply belongs to is kept in the database, so it holds across a restart. In a
group the stars are kept but no comment is asked: the prompt would open for every member, and the
comment would be public.
"""

from __future__ import annotations

import logging

from telegram import CallbackQuery, Message, User
from telegram.constants import ChatType

from bridges.ratings import RatingNotices, RatingPress, Ratings, Verdict
from bridges.surface import SurfaceError, send_notice
from bridges.telegram.surface import Surfaces

log = logging.getLogger(__name__)

PLATFORM = "telegram"


class TelegramRatings:
    def __init__(self, ratings: Ratings, surfaces: Surfaces) -> None:
        self.ratings = ratings
        self.surfaces = surfaces

    def _words(self, user: User) -> RatingNotices:
        """What the user is told, in the language their app is set to."""
        return self.ratings.handoffs.catalogue.words(user.language_code)(RatingNotices)

    async def pressed(self, query: CallbackQuery, press: RatingPress) -> None:
        say = self._words(query.from_user)
        rated = await self.ratings.rate(press, PLATFORM, str(query.from_user.id), say)
        if rated.verdict is not Verdict.RATED:
            await query.answer(rated.answer, show_alert=True)
            return
        await query.answer()
        message = query.message
        if not isinstance(message, Message):  # too old for Telegram to say which: the rating still counts
            return
        surface = self.surfaces.plain(message)
        try:
            await surface.edit(str(message.message_id), rated.answer)  # without buttons: the result
            if self.ratings.settings.comments and message.chat.type == ChatType.PRIVATE:
                prompt = await surface.ask(say.comment_prompt, say.comment_label)
                await self.ratings.comment_asked(press.handoff_id, f"{message.chat.id}:{prompt}")
        except SurfaceError as exc:
            log.warning("telegram: could not show a rating's result or ask for a comment: %s", exc)

    async def replied(self, message: Message, bot_id: int) -> bool:
        """Whether `message` is a comment (a reply to a comment prompt); if so it is taken and answered."""
        replied = message.reply_to_message
        text = message.text or message.caption or ""
        if replied is None or replied.from_user is None or replied.from_user.id != bot_id or not text.strip():
            return False
        case = await self.ratings.prompted(f"{message.chat.id}:{replied.message_id}")
        if case is None or message.from_user is None:
            return False
        user = message.from_user
        answer = await self.ratings.comment(case, PLATFORM, str(user.id), text, self._words(user))
        await send_notice(self.surfaces.plain(message), answer)
        return True
