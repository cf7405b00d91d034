"""python-telegram-bot handlers: which updates reach the Relay, as what `Inbound`, on which surface.

Triggers: every text in a private chat; in groups an @mention of the bot, a reply to one of its
messages, a command, and whatever else the chat's trigger rule picks (bridges/triggers.py). A forum
topic is its own place, so it keeps its own conversation. The moderator desk's chat, if configured,
belongs to the desk alone, except for `/block` and `/unblock`. A block is global, so those are for the
desk's moderators in the desk's chat (or their private chat with the bot) and for the configured admins.
Outside the allow-lists (`allowed_chats`, `allowed_users`) nothing reaches these handlers
(bridges/telegram/access.py).

Someone posting as a channel, or as an anonymous group admin, is keyed by that sender chat: its own
conversation, rate limit and block, never shared with everyone else who posts the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace

from telegram import CallbackQuery, Message, MessageEntity, Update, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bridges.attachments import with_sticker_words
from bridges.buttons import ButtonStore
from bridges.catalogue import Phrasebook, Strings
from bridges.controls import Control, ControlNotices, parse_control
from bridges.durations import duration_and_reason
from bridges.moderation import USER_ID, Moderation, Moderator, Target
from bridges.ratings import rating_press
from bridges.registry import blockable
from bridges.relay import Relay
from bridges.surface import Inbound, SurfaceError, send_notice
from bridges.takeover import Takeovers
from bridges.telegram.config import TelegramConfig
from bridges.telegram.desk import TelegramDesk
from bridges.telegram.desk_commands import DeskCommands
from bridges.telegram.files import MESSAGES, attachments_of
from bridges.telegram.keyboards import token_of
from bridges.telegram.ratings import TelegramRatings
from bridges.telegram.surface import DraftingSurface, Surfaces
from bridges.telegram.takeover_commands import TakeoverCommands
from bridges.telegram.usage import UsageCommand
from bridges.triggers import Answer, MessageFacts

log = logging.getLogger(__name__)

PLATFORM = "telegram"


class CommandMenu(Strings, key="telegram.commands"):
    """The command menu's descriptions, one per command (registered in every shipped language)."""

    start = "What this bot does"
    reset = "Start a new conversation"
    human = "Ask for a human moderator"
    stop = "Stop the reply being written"
    usage = "How much of the assistant you have used"
    agent = "Choose the agent for this chat (admins)"
    block = "Ignore a user: /block PLATFORM ID [2h] [reason], or as a reply (moderators)"
    unblock = "Answer a blocked user again: /unblock PLATFORM ID (moderators)"


PUBLIC_COMMANDS = ("start", "reset", "human", "stop", "usage")
ADMIN_COMMANDS = (*PUBLIC_COMMANDS, "agent", "block", "unblock")
CHAT_SCOPE = "telegram_chat"
"""Where `/agent` binds an agent (bridges/registry.py declares it): this chat, or this group."""


class Replies(Strings, key="telegram"):
    not_admin = "Only the bot's admins can choose the agent."
    agent_usage = "Usage: /agent NAME. Configured agents: {agents}."
    agent_bound = "This chat now talks to {agent}. New conversations here use it; /reset to start one now."
    expired_button = "This button has expired."
    moderators_only = (
        "Only moderators can block or unblock users, in the moderators' chat or in a private chat with me."
    )
    block_usage = (
        "Usage: /block PLATFORM ID [DURATION] [REASON], for example /block discord 123 2h spam (the "
        "platform and id are on the handoff notification), or send /block [DURATION] [REASON] as a reply "
        "to the person's message. In a handoff's topic, /block alone means that handoff's user. "
        "/unblock takes the same PLATFORM ID, reply or topic."
    )
    failed = "Sorry, that did not work. Please try again in a moment."


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
        self.moderation = Moderation(relay)
        self.ratings = TelegramRatings(relay.handoffs.ratings, surfaces)

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        users: filters.BaseFilter = filters.UpdateType.MESSAGES
        if self.desk is not None:  # first: its buttons and chat are matched before the general handlers
            self.desk.install(app)
            DeskCommands(self.desk).install(app)
            TakeoverCommands(self.desk, Takeovers(self.relay), self.surfaces, CHAT_SCOPE).install(app)
            users = users & ~filters.Chat(self.desk.chat_id)
        commands = {
            "start": self.start,
            "reset": self.reset,
            "human": self.human,
            "agent": self.agent,
            "stop": self.stop,
            "usage": UsageCommand(self.relay, self.surfaces, self.config.admins, _inbound).usage,
        }
        for name, callback in commands.items():
            app.add_handler(CommandHandler(name, callback, filters=users))
        for name, callback in {"block": self.block, "unblock": self.unblock}.items():  # the desk's too
            app.add_handler(CommandHandler(name, callback, filters=filters.UpdateType.MESSAGE))
        app.add_handler(
            MessageHandler(filters.UpdateType.MESSAGE & MESSAGES & ~filters.COMMAND & users, self.message)
        )
        edits = filters.UpdateType.EDITED_MESSAGE & MESSAGES & ~filters.COMMAND & users
        app.add_handler(MessageHandler(edits, self.edited))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_handler(ChatMemberHandler(self.bot_blocked, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self.error)

    async def message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None:
            return
        answer = self._trigger(message, context)
        if answer is None:
            return
        if await self.ratings.replied(message, context.bot.id):  # a rating's comment, not for the agent
            return
        files = attachments_of(message)
        text = with_sticker_words(answer.text, files)
        await self._serve(replace(_inbound(message, text), attachments=files), message)

    async def edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A user edited a message the bot would answer. (Telegram tells bots of edits, never of
        deletions.)"""
        message = update.edited_message
        if message is None or message.from_user is None:
            return
        answer = self._trigger(message, context, roll=False)
        if answer is not None:
            await self.relay.edited(_inbound(message, answer.text))

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        control = parse_control(query.data)
        if control is not None:
            await self._control(query, *control)
            return
        token = token_of(query.data)
        pressed = await self.buttons.get(token) if token else None
        press = rating_press(pressed) if pressed is not None else None
        if press is not None and self.accepting:
            await self.ratings.pressed(query, press)
            return
        await query.answer(None if pressed else self._words(query.from_user)(Replies).expired_button)
        message = query.message
        if pressed is None or not isinstance(message, Message) or not self.accepting:
            return
        inbound = replace(
            _inbound(message, pressed.label),
            user_id=str(query.from_user.id),
            display_name=query.from_user.full_name,
            locale=query.from_user.language_code or "",
            button=pressed,
        )
        await self._serve(inbound, message)

    async def _control(self, query: CallbackQuery, control: Control, owner: str) -> None:
        """Stop (the reply's user, or an admin of the chat) or Regenerate (its user only) pressed."""
        message = query.message
        words = self._words(query.from_user)
        say = words(ControlNotices)
        if not isinstance(message, Message) or not self.accepting:
            await query.answer(say.already_finished)
            return
        own = str(query.from_user.id) == owner
        inbound = replace(_inbound(message, ""), user_id=owner, display_name=query.from_user.full_name)
        if control is Control.STOP:
            if not own and not await self._may_stop_others(query):
                await query.answer(say.stop_not_yours)
            elif self.relay.stop(inbound, on_message=str(message.message_id)):
                await query.answer()  # the reply's final edit takes the button away
                if not own:  # a moderator's action: on the desks' log, with who, whom and where
                    await self.relay.handoffs.audit(
                        f"⏹ telegram user {query.from_user.id} stopped a reply to telegram user {owner} "
                        f"in chat {message.chat.id}"
                    )
            else:
                await query.answer(say.already_finished)
            return
        if not own:
            await query.answer(say.regenerate_not_yours)
            return
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        try:
            await self.relay.regenerate(inbound, self.surfaces.plain(message), query.answer, words)
        finally:
            self.in_flight.discard(task)

    async def _may_stop_others(self, query: CallbackQuery) -> bool:
        """The bot's admins, and the chat's administrators (a group's moderators)."""
        user_id = query.from_user.id
        if user_id in self.config.admins:
            return True
        message = query.message
        if message is None or message.chat.type == ChatType.PRIVATE:
            return False
        try:
            member = await query.get_bot().get_chat_member(message.chat.id, user_id)
        except TelegramError as exc:
            log.warning("telegram: could not look up %s in chat %s: %s", user_id, message.chat.id, exc)
            return False
        return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)

    async def stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stop the reply being written for the sender here; its final edit shows it stopped, so only
        "nothing to stop" needs an answer."""
        message = update.message
        if message is None or message.from_user is None:
            return
        if not self.relay.stop(_inbound(message, "/stop")):
            nothing = self._words(message.from_user)(ControlNotices).nothing_to_stop
            await send_notice(self.surfaces.plain(message), nothing)

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (message := update.message) is None or message.from_user is None:
            return
        surface = self.surfaces.plain(message)
        refusal = await self.relay.admission(_inbound(message, "/start"))
        if refusal is None or refusal.notice is not None:
            await send_notice(surface, self.config.start_text if refusal is None else refusal.notice or "")

    async def reset(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (message := update.message) is not None and message.from_user is not None:
            await self.relay.reset(_inbound(message, "/reset"), self.surfaces.plain(message))

    async def human(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (message := update.message) is not None and message.from_user is not None:
            await self.relay.request_human(_inbound(message, "/human"), self.surfaces.plain(message))

    async def bot_blocked(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A user who blocked the bot in their private chat reads nothing more: their open case closes."""
        change = update.my_chat_member
        if change is None or change.chat.type != ChatType.PRIVATE:
            return
        if change.new_chat_member.status == ChatMemberStatus.BANNED:  # "kicked": blocked by the user
            await self.relay.handoffs.cases.user_gone(PLATFORM, str(change.chat.id), "blocked the bot")

    async def agent(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None:
            return
        surface = self.surfaces.plain(message)
        say = self._words(message.from_user)(Replies)
        user_id = message.from_user.id
        if user_id not in self.config.admins:
            await send_notice(surface, say.not_admin)
            return
        if len(context.args or []) != 1:
            await send_notice(surface, say.agent_usage.format(agents=", ".join(sorted(self.relay.agents))))
            return
        name = (context.args or [""])[0]
        try:
            await self.relay.bindings.bind(CHAT_SCOPE, str(message.chat.id), name, by=f"{PLATFORM}:{user_id}")
        except ValueError as exc:
            await send_notice(surface, str(exc))
            return
        await send_notice(surface, say.agent_bound.format(agent=name))

    async def block(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._moderate(update, context, block=True)

    async def unblock(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._moderate(update, context, block=False)

    async def _moderate(self, update: Update, context: ContextTypes.DEFAULT_TYPE, *, block: bool) -> None:
        """Block or unblock whom the command names; only moderators, where they may, and everyone else is
        told so."""
        message = update.message
        if message is None or message.from_user is None:
            return
        surface = self.surfaces.plain(message)
        say = self._words(message.from_user)(Replies)
        if not await self._may_moderate(message):
            await send_notice(surface, say.moderators_only)
            return
        sender = _sender(message)
        moderator = Moderator(f"{PLATFORM}:{sender[0]}", sender[1], f"telegram chat {message.chat.id}")
        # an admin may act in a group the bot serves, where the person blocked can read the answer
        private = message.chat.type == ChatType.PRIVATE or (
            self.desk is not None and message.chat.id == self.desk.chat_id
        )
        try:
            target, words = await self._target(message, context.args or [])
            if target is None:
                reply = say.block_usage
            elif not block:
                reply = await self.moderation.unblock(target, str(target), moderator)
            else:
                reply = await self._block(target, moderator, words, private)
        except Exception:
            log.exception("telegram: /%s failed", "block" if block else "unblock")
            reply = say.failed
        await send_notice(surface, reply)

    async def _block(self, target: Target, moderator: Moderator, words: list[str], private: bool) -> str:
        try:
            duration, reason = duration_and_reason(words)
        except ValueError:
            return self.moderation.words.bad_duration.format(word=words[0][:40])
        return await self.moderation.block(
            target, str(target), moderator, duration, reason, show_reason=private
        )

    async def _may_moderate(self, message: Message) -> bool:
        """A configured admin anywhere; a moderator of the desk in the desk's chat or a private chat with
        the bot (a block is global, so it is never decided by another group). An anonymous admin counts
        only in the desk's own chat, as its admin."""
        if message.sender_chat is not None:  # anonymous: only as an admin of the desk whose members moderate
            desk = self.desk
            return (
                desk is not None
                and desk.config.members_are_moderators
                and message.sender_chat.id == message.chat.id == desk.chat_id
            )
        user_id = message.from_user.id if message.from_user is not None else 0
        if user_id in self.config.admins:
            return True
        if self.desk is None:
            return False
        where_allowed = message.chat.id == self.desk.chat_id or message.chat.type == ChatType.PRIVATE
        return where_allowed and await self.desk.is_moderator(user_id)

    async def _target(self, message: Message, args: list[str]) -> tuple[Target | None, list[str]]:
        """Whom, and the words after it (duration, reason): PLATFORM ID if given; else in the desk's chat
        the handoff the command was sent about, and elsewhere the sender of the message it replies to.
        None if that names nobody."""
        if len(args) >= 2 and args[0].lower() in blockable():
            platform, user_id = args[0].lower(), args[1]
            known = USER_ID.fullmatch(user_id) is not None
            return (Target(platform, user_id) if known else None), args[2:]
        if self.desk is not None and message.chat.id == self.desk.chat_id:
            handoff_id = await self.desk.handoff_of(message)
            if handoff_id is None:
                return None, args
            view = await self.relay.handoffs.view(handoff_id)
            return Target(view.platform, view.user_id, view.user_name, handoff_id), args
        replied = message.reply_to_message
        # in a topic every message "replies" to the topic's start, which names nobody
        if replied is None or replied.forum_topic_created is not None:
            return None, args
        if replied.from_user is not None and replied.from_user.is_bot and replied.sender_chat is None:
            return None, args
        user_id, name = _sender(replied)
        return Target(PLATFORM, user_id, name), args

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log it, and tell the person whose message failed rather than leave them waiting."""
        log.error("telegram handler failed", exc_info=context.error)
        message = update.effective_message if isinstance(update, Update) else None
        if message is not None:
            failed = self._words(message.from_user)(Replies).failed
            await send_notice(self.surfaces.plain(message), failed)

    def _words(self, user: User | None) -> Phrasebook:
        """What to say to this Telegram user: in the language their app is set to."""
        return self.relay.catalogue.words(user.language_code if user is not None else None)

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

    def _trigger(
        self, message: Message, context: ContextTypes.DEFAULT_TYPE, *, roll: bool = True
    ) -> Answer | None:
        """Whether to answer (and with what text): the chat's trigger rule decides from what the message
        says about itself (`roll=False` for an edit)."""
        bot = context.bot
        kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        mentions = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
        replied = message.reply_to_message
        user = message.from_user
        facts = MessageFacts(
            text=self._without_mention(message.text or message.caption or "", context),
            scopes=_binding_scopes(message),
            user_id=_sender(message)[0],
            private=message.chat.type == ChatType.PRIVATE,
            mentioned=any(
                text.lower() == f"@{bot.username}".lower() or (entity.user and entity.user.id == bot.id)
                for entity, text in mentions.items()
            ),
            reply_to_bot=replied is not None
            and replied.forum_topic_created is None  # in a topic, every message "replies" to its start
            and replied.from_user is not None
            and replied.from_user.id == bot.id,
            # posting as a channel or anonymously shows Telegram's placeholder bot as the sender
            from_bot=user is not None and user.is_bot and message.sender_chat is None,
        )
        return self.relay.policy.triggers.answer(facts, roll=roll)

    @staticmethod
    def _without_mention(text: str, context: ContextTypes.DEFAULT_TYPE) -> str:
        """The message as meant for the agent: "@bot what is X?" asks "what is X?"."""
        without = re.sub(rf"@{re.escape(context.bot.username)}\b", "", text, flags=re.IGNORECASE)
        return re.sub(r"[ \t]{2,}", " ", without).strip()


def _sender(message: Message) -> tuple[str, str]:
    """(id, name) of who wrote it: the sender chat when someone posts as a channel or as an anonymous
    admin (`from_user` is then a placeholder that everyone posting that way shares), else the user."""
    if message.sender_chat is not None:
        chat = message.sender_chat
        return str(chat.id), chat.title or chat.effective_name or f"chat {chat.id}"
    user = message.from_user
    assert user is not None
    return str(user.id), user.full_name


def _inbound(message: Message, text: str) -> Inbound:
    user_id, name = _sender(message)
    return Inbound(
        platform=PLATFORM,
        chat_id=str(message.chat.id),
        user_id=user_id,
        display_name=name,
        text=text,
        message_id=str(message.message_id),
        thread_id=str(message.message_thread_id) if message.is_topic_message else "",
        is_dm=message.chat.type == ChatType.PRIVATE,
        binding_scopes=_binding_scopes(message),
        locale=_language(message),
    )


def _binding_scopes(message: Message) -> tuple[tuple[str, str], ...]:
    """A message's places for bindings and trigger rules: its chat (a topic belongs to its group)."""
    return ((CHAT_SCOPE, str(message.chat.id)),)


def _language(message: Message) -> str:
    """The sender's app language (`de`, `pt-br`); none for posts as a channel or an anonymous admin."""
    user = message.from_user
    return (user.language_code or "") if user is not None and message.sender_chat is None else ""
