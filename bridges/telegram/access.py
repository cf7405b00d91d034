"""Telegram allow-lists (`allowed_chats`, `allowed_users`): who the bot serves at all, checked before any
handler sees an update.

`allowed_chats` lists groups and supergroups; `allowed_users` lists people (the bot's admins always
count as listed), in groups and private chats alike. Someone posting as a channel or as an anonymous
admin is that sender chat, as everywhere else. The moderator desk's chat is always served, since it
belongs to the desk.

Outside the lists the bot is silent in groups, where an answer would be noise to everyone else. In a
private chat it says once a day that it is not available: silence there reads as a broken bot, and a
person never told would keep trying; once a day, so a repeat sender cannot make it spend its send budget
on them. The day is remembered in memory only, so a restart may tell someone one extra time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime

from telegram import Chat, Update
from telegram.constants import ChatType
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes, TypeHandler

from bridges.catalogue import Catalogue, Strings
from bridges.surface import send_notice
from bridges.telegram.config import TelegramConfig
from bridges.telegram.surface import Surfaces
from models import utcnow


class AccessReplies(Strings, key="telegram.access"):
    """What the allow-lists say (only ever in a private chat, or on a pressed button)."""

    not_available = "This assistant is not available here."


class AllowList:
    def __init__(
        self,
        config: TelegramConfig,
        surfaces: Surfaces,
        catalogue: Catalogue,
        in_case: Callable[[int], Awaitable[bool]],
        *,
        desk_chat: int | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.chats = frozenset(config.allowed_chats)
        self.users = (
            frozenset((*config.allowed_users, *config.admins)) if config.allowed_users else frozenset()
        )
        self.surfaces = surfaces
        self.catalogue = catalogue
        self.in_case = in_case
        """Whether a user has an open case: a moderator who wrote to them first (/contact, /takeover)
        hears their answers even from outside the lists."""
        self.desk_chat = desk_chat
        self._now = now
        self._day: date | None = None
        self._told: set[int] = set()
        """Private-chat users told today that the bot is not available to them."""

    @property
    def active(self) -> bool:
        """Whether any list is set; without one every chat and user is served."""
        return bool(self.chats or self.users)

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        """Ahead of every other handler (group -1), so a refused update reaches none of them."""
        app.add_handler(TypeHandler(Update, self.check), group=-1)

    def allows(self, chat: Chat, sender: int) -> bool:
        if chat.id == self.desk_chat:
            return True
        if chat.type != ChatType.PRIVATE and self.chats and chat.id not in self.chats:
            return False
        return not self.users or sender in self.users

    async def check(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Let the update through, or stop it here (telling a private chat once a day)."""
        chat, sender = update.effective_chat, update.effective_sender
        if update.my_chat_member is not None or chat is None or sender is None:
            return  # the bot's own membership changes are not anyone talking to it
        if self.allows(chat, sender.id):
            return
        if chat.type == ChatType.PRIVATE and await self.in_case(sender.id):
            return
        user = update.effective_user
        refusal = self.catalogue.words(user.language_code if user else None)(AccessReplies).not_available
        if update.callback_query is not None:
            await update.callback_query.answer(refusal)
        elif update.message is not None and chat.type == ChatType.PRIVATE and self._first_today(sender.id):
            await send_notice(self.surfaces.plain(update.message), refusal)
        raise ApplicationHandlerStop

    def _first_today(self, user: int) -> bool:
        today = self._now().date()
        if today != self._day:
            self._day, self._told = today, set()
        if user in self._told:
            return False
        self._told.add(user)
        return True
