"""python-telegram-bot handlers: which updates reach the Relay, as what `Inbound`, on which surface.

Triggers: every text in a private chat; in groups an @mention of the bot, a reply to one of its
messages, or a command. A forum topic is its own place, so it keeps its own conversation. The
moderator desk's chat, if configured, belongs to the desk alone.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bridges.buttons import ButtonStore
from bridges.relay import Relay
from bridges.surface import Inbound, Surface, SurfaceError
from bridges.telegram.config import TelegramConfig
from bridges.telegram.desk import TelegramDesk
from bridges.telegram.keyboards import token_of
from bridges.telegram.surface import DraftingSurface, Surfaces
from models.binding import BindingScope

log = logging.getLogger(__name__)

PLATFORM = "telegram"
PUBLIC_COMMANDS = (
    ("start", "What this bot does"),
    ("reset", "Start a new conversation"),
    ("human", "Ask for a human moderator"),
)
ADMIN_COMMANDS = (*PUBLIC_COMMANDS, ("agent", "Choose the agent for this chat (admins)"))


class Replies:
    not_admin = "Only the bot's admins can choose the agent."
    agent_usage = "Usage: /agent NAME. Configured agents: {agents}."
    agent_bound = "This chat now talks to {agent}. New conversations here use it; /reset to start one now."
    expired_button = "This button has expired."


class Handlers:
    def __init__(
        self,
        relay: Relay,
        config: TelegramConfig,
        surfaces: Surfaces,
        buttons: ButtonStore,
        desk: TelegramDesk | None = None,
    ) -> None:
        self.relay = relay
        self.config = config
        self.surfaces = surfaces
        self.buttons = buttons
        self.desk = desk
        self.accepting = True
        self.in_flight: set[asyncio.Task[object]] = set()

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        users: filters.BaseFilter = filters.UpdateType.MESSAGES
        if self.desk is not None:  # first: its buttons and chat are matched before the general handlers
            self.desk.install(app)
            users = users & ~filters.Chat(self.desk.chat_id)
        commands = {"start": self.start, "reset": self.reset, "human": self.human, "agent": self.agent}
        for name, callback in commands.items():
            app.add_handler(CommandHandler(name, callback, filters=users))
        app.add_handler(
            MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND & users, self.message)
        )
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_error_handler(self.error)

    async def message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None or not self._triggered(message, context):
            return
        inbound = _inbound(message, self._without_mention(message.text or "", context))
        await self._serve(inbound, message)

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        token = token_of(query.data)
        pressed = await self.buttons.get(token) if token else None
        await query.answer(None if pressed else Replies.expired_button)
        message = query.message
        if pressed is None or not isinstance(message, Message) or not self.accepting:
            return
        inbound = replace(
            _inbound(message, pressed.label),
            user_id=str(query.from_user.id),
            display_name=query.from_user.full_name,
            button=pressed,
        )
        await self._serve(inbound, message)

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (message := update.message) is not None:
            await _tell(self.surfaces.plain(message), self.config.start_text)

    async def reset(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (message := update.message) is not None and message.from_user is not None:
            await self.relay.reset(_inbound(message, "/reset"), self.surfaces.plain(message))

    async def human(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (message := update.message) is not None and message.from_user is not None:
            await self.relay.request_human(_inbound(message, "/human"), self.surfaces.plain(message))

    async def agent(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None:
            return
        surface = self.surfaces.plain(message)
        user_id = message.from_user.id
        if user_id not in self.config.admins:
            await _tell(surface, Replies.not_admin)
            return
        if len(context.args or []) != 1:
            await _tell(surface, Replies.agent_usage.format(agents=", ".join(sorted(self.relay.agents))))
            return
        name = (context.args or [""])[0]
        try:
            await self.relay.bind_agent(
                BindingScope.TELEGRAM_CHAT, str(message.chat.id), name, by=f"{PLATFORM}:{user_id}"
            )
        except ValueError as exc:
            await _tell(surface, str(exc))
            return
        await _tell(surface, Replies.agent_bound.format(agent=name))

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram handler failed", exc_info=context.error)

    async def _serve(self, inbound: Inbound, message: Message) -> None:
        """Hand one turn to the Relay; in private chats, post the draft it streamed once it is over."""
        if not self.accepting:
            return
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        surface = self.surfaces.for_reply(message)
        try:
            await self.relay.handle(inbound, surface)
        finally:
            try:
                if isinstance(surface, DraftingSurface):
                    await surface.finish()
            except SurfaceError as exc:
                log.error("telegram: could not post the finished reply in chat %s: %s", inbound.chat_id, exc)
            finally:
                self.in_flight.discard(task)

    def _triggered(self, message: Message, context: ContextTypes.DEFAULT_TYPE) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        bot = context.bot
        for entity, text in message.parse_entities(
            [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        ).items():
            if text.lower() == f"@{bot.username}".lower() or (entity.user and entity.user.id == bot.id):
                return True
        replied = message.reply_to_message
        return (
            replied is not None
            and replied.forum_topic_created is None  # in a topic, every message "replies" to its start
            and replied.from_user is not None
            and replied.from_user.id == bot.id
        )

    @staticmethod
    def _without_mention(text: str, context: ContextTypes.DEFAULT_TYPE) -> str:
        """The message as meant for the agent: "@bot what is X?" asks "what is X?"."""
        without = re.sub(rf"@{re.escape(context.bot.username)}\b", "", text, flags=re.IGNORECASE)
        return re.sub(r"[ \t]{2,}", " ", without).strip()


def _inbound(message: Message, text: str) -> Inbound:
    user = message.from_user
    assert user is not None
    return Inbound(
        platform=PLATFORM,
        chat_id=str(message.chat.id),
        user_id=str(user.id),
        display_name=user.full_name,
        text=text,
        message_id=str(message.message_id),
        thread_id=str(message.message_thread_id) if message.is_topic_message else "",
        is_dm=message.chat.type == ChatType.PRIVATE,
    )


async def _tell(surface: Surface, text: str) -> None:
    try:
        await surface.send(text)
    except SurfaceError as exc:
        log.warning("telegram: could not answer a command: %s", exc)
