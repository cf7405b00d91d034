"""The Telegram desk's `/takeover` and `/contact`, in the moderators' chat (a case's topic included).

Whom: a numeric id (`/takeover 123`, or `/takeover discord 456` for a user of another platform, as a
notification shows them), or, with no id, the author of the forwarded message the command replies to,
or in a case's topic that case's user. Telegram does not let a bot look a user up by @username, nor say
who wrote a forward when they hide their account in forwards; the moderator is told so.

`/contact` writes to a Telegram user in their private chat with the bot, which Telegram allows only once
they have started it (and not after they blocked it): the moderator learns which, and nothing opens.
Only the desk's moderators; in a private chat with the bot the command is refused there, and other
groups never see it handled (an answer there would be public). The work is done by
`bridges.takeover.Takeovers`, shared with the Discord desk.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Message, MessageOriginHiddenUser, MessageOriginUser, Update
from telegram.error import BadRequest, Forbidden
from telegram.ext import Application, CommandHandler, ContextTypes, filters

from bridges.budget import acquire_all
from bridges.cases import DeskWords
from bridges.catalogue import Strings
from bridges.moderation import USER_ID, Moderator, Target
from bridges.registry import blockable
from bridges.surface import Inbound, SurfaceError, send_notice
from bridges.takeover import Takeovers
from bridges.telegram.desk import NAME, TelegramDesk
from bridges.telegram.surface import Surfaces

log = logging.getLogger(__name__)


class TakeoverReplies(Strings, key="telegram.takeover"):
    """What only the Telegram side of /takeover and /contact says."""

    takeover_usage = (
        "Usage: /takeover ID (or PLATFORM ID, as a notification shows them), or send /takeover as a reply "
        "to a message of theirs forwarded here. In a case's topic, /takeover alone means its user."
    )
    contact_usage = "Usage: /contact ID, or send /contact as a reply to a message of theirs forwarded here."
    no_usernames = (
        "Telegram does not let a bot look a user up by @username. Give their numeric id (a case "
        "notification shows it), or reply to a message of theirs forwarded here."
    )
    hidden = (
        "{name} hides their account in forwarded messages, so Telegram does not say who they are. "
        "Give their numeric id instead."
    )
    desk_only = "Use /takeover and /contact in the moderators' chat."
    not_started = (
        "{user} has not started the bot, so Telegram does not let it write to them first. Nothing was "
        "opened; once they open a chat with the bot and press Start, try again."
    )
    blocked = "{user} has blocked the bot, so Telegram does not deliver its messages. Nothing was opened."
    unknown = (
        "Telegram knows no chat with {user}: check the id (they may never have started the bot). "
        "Nothing was opened."
    )
    refused = "Telegram refused the message to {user} ({detail}). Nothing was opened."


Command = Callable[[Message, Moderator, list[str]], Awaitable[str]]


class TakeoverCommands:
    def __init__(self, desk: TelegramDesk, takeovers: Takeovers, surfaces: Surfaces, chat_scope: str) -> None:
        self.desk = desk
        self.takeovers = takeovers
        self.surfaces = surfaces
        self.chat_scope = chat_scope
        """Where a private chat's agent is bound (the bridge's `telegram_chat` scope)."""

    @property
    def words(self) -> TakeoverReplies:
        """What moderators are answered, in the desks' language."""
        return self.takeovers.handoffs.catalogue.desk(TakeoverReplies)

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        """In the moderators' chat, and (to refuse) in private chats; before the bridge's own handlers."""
        where = (filters.Chat(self.desk.chat_id) | filters.ChatType.PRIVATE) & filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("takeover", self._handler(self._take_over), filters=where))
        app.add_handler(CommandHandler("contact", self._handler(self._contact), filters=where))

    def _handler(
        self, command: Command
    ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message = update.message
            if message is None or message.from_user is None:
                return
            if message.chat.id != self.desk.chat_id:
                await send_notice(self.surfaces.plain(message), self.words.desk_only)
                return
            async with self.desk.in_order(message):  # after what was written before it in the topic
                user = message.from_user
                if message.sender_chat is not None or not await self.desk.is_moderator(user.id):
                    await self.desk.reply_to(
                        message, self.takeovers.handoffs.catalogue.desk(DeskWords).not_moderator
                    )
                    return
                topic = f", topic {message.message_thread_id}" if message.is_topic_message else ""
                moderator = Moderator(
                    f"{NAME}:{user.id}", user.full_name, f"telegram chat {message.chat.id}{topic}"
                )
                try:
                    answer = await command(message, moderator, list(context.args or []))
                except Exception:
                    log.exception("telegram: a takeover or contact by %s failed", moderator.id)
                    answer = self.takeovers.handoffs.catalogue.desk(DeskWords).failed
                await self.desk.reply_to(message, answer)

        return handle

    async def _take_over(self, message: Message, moderator: Moderator, args: list[str]) -> str:
        target = await self._whom(message, args, cross_platform=True)
        if isinstance(target, str):
            return target or self.words.takeover_usage
        return await self.takeovers.take_over(moderator, target)

    async def _contact(self, message: Message, moderator: Moderator, args: list[str]) -> str:
        target = await self._whom(message, args, cross_platform=False)
        if isinstance(target, str):
            return target or self.words.contact_usage
        target = await self.takeovers.named(target)
        private = Inbound(
            NAME,
            target.user_id,
            target.user_id,
            target.name,
            "",
            is_dm=True,
            binding_scopes=((self.chat_scope, target.user_id),),
        )
        return await self.takeovers.contact(moderator, target, private, self._greeter(target))

    def _greeter(self, target: Target) -> Callable[[str], Awaitable[str | None]]:
        surface = self.surfaces.for_place(NAME, target.user_id, "")
        assert surface is not None
        who = target.name or str(target)

        async def greet(text: str) -> str | None:
            await acquire_all(surface.budgets)
            try:
                await surface.send(text)
            except SurfaceError as exc:
                return _refusal(exc, who, self.words)
            return None

        return greet

    async def _whom(self, message: Message, args: list[str], *, cross_platform: bool) -> Target | str:
        """The user the command names, or what to tell the moderator ("" for the usage)."""
        if (
            cross_platform
            and len(args) == 2
            and args[0].lower() in blockable()
            and USER_ID.fullmatch(args[1])
        ):
            return Target(args[0].lower(), args[1])
        if len(args) == 1 and args[0].startswith("@"):
            return self.words.no_usernames
        if len(args) == 1 and USER_ID.fullmatch(args[0]):
            return Target(NAME, args[0])
        if args:
            return ""
        replied = message.reply_to_message
        origin = replied.forward_origin if replied is not None else None
        if isinstance(origin, MessageOriginUser):
            return Target(NAME, str(origin.sender_user.id), origin.sender_user.full_name)
        if isinstance(origin, MessageOriginHiddenUser):
            return self.words.hidden.format(name=origin.sender_user_name)
        handoff_id = await self.desk.handoff_of(message) if cross_platform else None
        if handoff_id is None:
            return ""
        view = await self.desk.handoffs.view(handoff_id)
        return Target(view.platform, view.user_id, view.user_name)


def _refusal(exc: SurfaceError, who: str, say: TakeoverReplies) -> str:
    """Telegram's refusal to write to a user, in words for the moderator."""
    cause = exc.__cause__
    detail = cause.message if isinstance(cause, Forbidden | BadRequest) else str(exc)
    if isinstance(cause, Forbidden) and "initiate" in detail:
        return say.not_started.format(user=who)
    if isinstance(cause, Forbidden) and "blocked" in detail:
        return say.blocked.format(user=who)
    if isinstance(cause, BadRequest) and "chat not found" in detail.lower():
        return say.unknown.format(user=who)
    return say.refused.format(user=who, detail=detail)
