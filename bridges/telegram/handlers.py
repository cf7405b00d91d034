"""python-telegram-bot handlers: which updates reach the Relay, as what `Inbound`, on which surface.

Triggers: every text in a private chat; in groups an @mention of the bot, a reply to one of its
messages, or a command. A forum topic is its own place, so it keeps its own conversation. The
moderator desk's chat, if configured, belongs to the desk alone, except for `/block` and `/unblock`,
which moderators (the desk's, and the configured admins) may use anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace

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
from bridges.surface import Inbound, SurfaceError, send_notice
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
ADMIN_COMMANDS = (
    *PUBLIC_COMMANDS,
    ("agent", "Choose the agent for this chat (admins)"),
    ("block", "Ignore a user: /block PLATFORM ID, or as a reply to them (moderators)"),
    ("unblock", "Answer a blocked user again: /unblock PLATFORM ID (moderators)"),
)
BLOCKABLE_PLATFORMS = ("discord", "telegram")


class Replies:
    not_admin = "Only the bot's admins can choose the agent."
    agent_usage = "Usage: /agent NAME. Configured agents: {agents}."
    agent_bound = "This chat now talks to {agent}. New conversations here use it; /reset to start one now."
    expired_button = "This button has expired."
    failed = "Sorry, something went wrong on my side. Please try again in a moment."
    moderators_only = "Only moderators can block or unblock users."
    block_usage = (
        "Usage: /{command} PLATFORM ID, for example /{command} discord 123 (the platform and id are on "
        "the handoff notification), or send /{command} as a reply to the person's message. In a "
        "handoff's topic, /{command} alone means that handoff's user."
    )
    blocked = "Blocked {who}: everything they send is ignored until a moderator uses /unblock."
    blocked_already = "{who} was already blocked."
    unblocked = "Unblocked {who}: the bot answers them again."
    unblocked_already = "{who} was not blocked."
    handoff_stays = (
        " Their handoff #{id} stays open, but what they send no longer reaches it: "
        "resolve or return it when you are done."
    )
    failed = "Sorry, that did not work. Please try again in a moment."


@dataclass(frozen=True)
class _Target:
    """Whom a `/block` or `/unblock` is about."""

    platform: str
    user_id: str
    handoff_id: int | None = None
    """Their open handoff, when the command was used in its topic."""

    def __str__(self) -> str:
        return f"{self.platform} user {self.user_id}"


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
        for name, callback in {"block": self.block, "unblock": self.unblock}.items():  # the desk's too
            app.add_handler(CommandHandler(name, callback, filters=filters.UpdateType.MESSAGE))
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
            await send_notice(self.surfaces.plain(message), self.config.start_text)

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
            await send_notice(surface, Replies.not_admin)
            return
        if len(context.args or []) != 1:
            await send_notice(
                surface, Replies.agent_usage.format(agents=", ".join(sorted(self.relay.agents)))
            )
            return
        name = (context.args or [""])[0]
        try:
            await self.relay.bind_agent(
                BindingScope.TELEGRAM_CHAT, str(message.chat.id), name, by=f"{PLATFORM}:{user_id}"
            )
        except ValueError as exc:
            await send_notice(surface, str(exc))
            return
        await send_notice(surface, Replies.agent_bound.format(agent=name))

    async def block(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._moderate(update, context, block=True)

    async def unblock(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._moderate(update, context, block=False)

    async def _moderate(self, update: Update, context: ContextTypes.DEFAULT_TYPE, *, block: bool) -> None:
        """Block or unblock whom the command names; only moderators, everyone else is told so."""
        message = update.message
        if message is None or message.from_user is None:
            return
        surface = self.surfaces.plain(message)
        moderator = message.from_user.id
        if not await self._is_moderator(moderator):
            await send_notice(surface, Replies.moderators_only)
            return
        try:
            target = await self._target(message, context.args or [])
            reply = (
                await self._apply(target, f"{PLATFORM}:{moderator}", block)
                if target is not None
                else Replies.block_usage.format(command="block" if block else "unblock")
            )
        except Exception:
            log.exception("telegram: /%s failed", "block" if block else "unblock")
            reply = Replies.failed
        await send_notice(surface, reply)

    async def _is_moderator(self, user_id: int) -> bool:
        """A configured admin, or a moderator of the desk."""
        if user_id in self.config.admins:
            return True
        return self.desk is not None and await self.desk.is_moderator(user_id)

    async def _target(self, message: Message, args: list[str]) -> _Target | None:
        """PLATFORM ID if given; else in the desk's chat the handoff the command was sent about, and
        elsewhere the sender of the message it replies to. None if that names nobody."""
        if args:
            platform, user_id = (args[0].lower(), args[1]) if len(args) == 2 else ("", "")
            known = platform in BLOCKABLE_PLATFORMS and user_id.isascii() and user_id.isdigit()
            return _Target(platform, user_id) if known else None
        if self.desk is not None and message.chat.id == self.desk.chat_id:
            handoff_id = await self.desk.handoff_of(message)
            if handoff_id is None:
                return None
            view = await self.relay.handoffs.view(handoff_id)
            return _Target(view.platform, view.user_id, handoff_id)
        replied = message.reply_to_message
        # in a topic every message "replies" to the topic's start, which names nobody
        person = replied.from_user if replied is not None and replied.forum_topic_created is None else None
        return _Target(PLATFORM, str(person.id)) if person is not None and not person.is_bot else None

    async def _apply(self, target: _Target, by: str, block: bool) -> str:
        """Do it, and say what changed; a block leaves the user's open handoff to the moderators."""
        relay = self.relay
        if not block:
            done = await relay.unblock(target.platform, target.user_id, by=by)
            return (Replies.unblocked if done else Replies.unblocked_already).format(who=target)
        if await relay.is_blocked(target.platform, target.user_id):
            return Replies.blocked_already.format(who=target)
        await relay.block(target.platform, target.user_id, by=by)
        reply = Replies.blocked.format(who=target)
        handoff_id = target.handoff_id or await relay.open_handoff_of_user(target.platform, target.user_id)
        return reply + (Replies.handoff_stays.format(id=handoff_id) if handoff_id is not None else "")

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log it, and tell the person whose message failed rather than leave them waiting."""
        log.error("telegram handler failed", exc_info=context.error)
        message = update.effective_message if isinstance(update, Update) else None
        if message is not None:
            await send_notice(self.surfaces.plain(message), Replies.failed)

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
