"""The Telegram moderator desk: a moderators' supergroup with one forum topic per handoff.

Each request opens a topic holding the notification (platform, user, reason, recent transcript, jump
link, and the configured mention as the ping) with Claim / Resolve / Return-to-bot buttons. The user's
messages are posted into the topic, and what the claiming moderator writes there reaches the user on
whatever platform they are. Buttons carry the handoff id and a topic is traced back to its handoff
through the refs stored with it, so nothing lives only in memory and a restart at any state loses
nothing.

If the moderator chat is not a forum (or the bot may not manage its topics), notifications are posted
in the chat itself and each handoff is followed up as replies: the user's messages arrive as replies to
the notification, and a moderator answers by replying to any of the desk's messages about the handoff,
each of which shows its "#id" tag first.

Every request is paid from the bridge's shared budgets (bot-wide; per chat and group for whatever is
posted), so a busy desk slows down instead of running into Telegram's flood control.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import Bot, CallbackQuery, InputFile, LinkPreviewOptions, Message, ReplyParameters, Update
from telegram.constants import ChatMemberStatus, ParseMode
from telegram.error import BadRequest, RetryAfter, TelegramError
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from agents.base import Attachment
from bridges.budget import acquire_all
from bridges.cases import PastCase, past_lines
from bridges.catalogue import Strings
from bridges.copies import Origin, desk_side
from bridges.handoff import HandoffService
from bridges.mirror import Mirror
from bridges.moderator_desk import HandoffView
from bridges.sla import SlaNotices
from bridges.split import split_text, utf16_length
from bridges.surface import SurfaceError
from bridges.telegram.config import TelegramDeskConfig
from bridges.telegram.files import MESSAGES, UPLOAD_LIMIT, attachments_of, upload
from bridges.telegram.formatting import MAX_CAPTION, MAX_TEXT, plain
from bridges.telegram.keyboards import DESK_PRESS, DeskAction, desk_keyboard, desk_press
from bridges.telegram.surface import Budgets, _seconds
from models import OPEN_HANDOFF_STATUSES, Conversation, HandoffStatus
from ops import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

NAME = "telegram"
"""The desk's key in `Handoff.notification_refs`."""
MODERATOR_STATUSES = frozenset(
    {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER}
)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_TAG = re.compile(r"#(\d+)")
_LINKABLE = ("https://", "http://", "tg://")
_MEMBERS_KEPT = 1024
# Visible lengths (UTF-16 units), chosen so a notification always fits in one 4096-unit message.
_NAME_UNITS = 128
_REASON_UNITS = 400
_ENTRY_UNITS = 300
_RECENT_UNITS = 2200


class DeskReplies(Strings, key="telegram.desk"):
    """What the desk says to moderators (callback answers are at most 200 characters)."""

    not_moderator = "Only moderators can take handoffs."
    claimed = "You have claimed handoff #{id}. What you write in it now goes to the user."
    already_claimed = "{name} has already claimed this handoff."
    closed = "This handoff is already closed."
    resolved = "Handoff #{id} is resolved; the assistant is back."
    returned = "Handoff #{id} is back with the assistant."
    escalation = "⏰ Handoff #{id} is still waiting for a moderator."
    overdue = "⏰ Handoff #{id} is past its first-response target: nobody has answered."


@dataclass(frozen=True)
class _Place:
    """Where a handoff lives on the desk, as stored in its refs."""

    handoff_id: int
    chat_id: int
    message_id: int
    """The notification."""
    thread_id: int | None
    """Its forum topic; None when the chat is not a forum and the handoff is followed up as replies."""

    @classmethod
    def of(cls, refs: Mapping[str, Any]) -> _Place:
        return cls(refs["handoff_id"], refs["chat_id"], refs["message_id"], refs.get("thread_id"))

    @property
    def tag(self) -> str:
        """Outside a topic, what ties a message to its handoff when a moderator replies to it."""
        return "" if self.thread_id is not None else f"#{self.handoff_id} "


def topic_key(chat_id: int, thread_id: int) -> str:
    """The refs value that finds a handoff from its topic (`HandoffService.open_handoff_at`)."""
    return f"{chat_id}:{thread_id}"


class TelegramDesk:
    """A `ModeratorDesk` in a Telegram supergroup, and the handlers for what moderators do there."""

    name = NAME
    place_keys: tuple[str, ...] = ("topic", "handoff_id")
    """A moderator's message is traced to its handoff by its topic, or outside topics by the "#id" tag of
    the desk message it replies to."""
    upload_limit = UPLOAD_LIMIT

    def __init__(
        self,
        bot: Bot,
        config: TelegramDeskConfig,
        budgets: Budgets,
        handoffs: HandoffService,
        *,
        max_retry_after: float = 60.0,
    ) -> None:
        self.bot = bot
        self.config = config
        self.budgets = budgets
        self.handoffs = handoffs
        self.max_retry_after = max_retry_after
        self._forum = True
        """Until createForumTopic is refused; then notifications go to the chat itself until a restart."""
        self._mirror = Mirror(handoffs)
        self._members: dict[int, tuple[bool, float]] = {}
        self._order: weakref.WeakValueDictionary[tuple[int, int | None], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def words(self) -> DeskReplies:
        """What the desk says, in the desks' language."""
        return self.handoffs.catalogue.desk(DeskReplies)

    @property
    def chat_id(self) -> int:
        """The moderator chat: every text there belongs to the desk, none to the agents."""
        return self.config.chat_id

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        """Route the moderator chat's text and the desk's buttons here; add before the bridge's own."""
        app.add_handler(
            MessageHandler(
                filters.Chat(self.chat_id) & filters.UpdateType.MESSAGE & MESSAGES & ~filters.COMMAND,
                self.on_message,
            )
        )
        edits = filters.Chat(self.chat_id) & filters.UpdateType.EDITED_MESSAGE & MESSAGES & ~filters.COMMAND
        app.add_handler(MessageHandler(edits, self.on_edit))
        app.add_handler(CallbackQueryHandler(self.on_press, pattern=DESK_PRESS))

    # -- ModeratorDesk -------------------------------------------------------------------------------

    async def open(self, view: HandoffView) -> dict[str, Any]:
        """A topic named after the user, holding the notification (or the notification in the chat
        itself when topics are unavailable); the refs lead back to both after a restart."""
        chat = self.chat_id
        thread_id = await self._create_topic(view) if self._forum else None
        message = await self._call(
            chat,
            lambda: self.bot.send_message(
                chat,
                notification(view, self._mention(view)),
                parse_mode=ParseMode.HTML,
                message_thread_id=thread_id,
                reply_markup=desk_keyboard(view.handoff_id, view.status),
                link_preview_options=_NO_PREVIEW,
            ),
        )
        refs: dict[str, Any] = {
            "handoff_id": view.handoff_id,
            "chat_id": chat,
            "message_id": message.message_id,
            "thread_id": thread_id,
        }
        if thread_id is not None:
            refs["topic"] = topic_key(chat, thread_id)
        return refs

    async def update(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        """Edit the notification; ping again on escalation (the service escalates a request once, and
        only then updates a request still waiting); close the topic once the handoff is over."""
        place = await self._redraw(refs, view)
        if view.status is HandoffStatus.REQUESTED and view.escalated:
            ping = html.escape(self.words.escalation.format(id=view.handoff_id))
            await self._post(place, f"{ping} {self._mention(view)}".strip())
        elif view.status not in OPEN_HANDOFF_STATUSES and place.thread_id:
            thread_id = place.thread_id
            await self._call(place.chat_id, lambda: self.bot.close_forum_topic(place.chat_id, thread_id))

    async def overdue(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        """Mark the notification as past its first-response target, and ping in the case's topic."""
        place = await self._redraw(refs, view)
        ping = html.escape(self.words.overdue.format(id=view.handoff_id))
        await self._post(place, f"{ping} {self._mention(view)}".strip())

    async def _redraw(self, refs: Mapping[str, Any], view: HandoffView) -> _Place:
        """Edit the notification to show `view`; returns where it is."""
        place = _Place.of(refs)
        await self._call(
            place.chat_id,
            lambda: self.bot.edit_message_text(
                notification(view, self._mention(view)),
                place.chat_id,
                place.message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=desk_keyboard(view.handoff_id, view.status),
                link_preview_options=_NO_PREVIEW,
            ),
        )
        return place

    def _mention(self, view: HandoffView) -> str:
        """Whom the case pings: its intake reason's mentions on this desk, else the desk's own."""
        return " ".join(
            html.escape(entry) if isinstance(entry, str) else f'<a href="tg://user?id={entry}">moderator</a>'
            for entry in view.pings.get(NAME) or self.config.mention
        )

    async def post(self, refs: Mapping[str, Any], author: str, text: str) -> str | None:
        """The user's message, split to fit, each part headed by who wrote it."""
        place = _Place.of(refs)
        name = plain(author, 64).text
        head = f"💬 {place.tag}{name}: "
        parts = split_text(text, MAX_TEXT - utf16_length(head), utf16_length)
        sent = [await self._post(place, _said(place, name, part)) for part in parts]
        return str(sent[0].message_id) if len(sent) == 1 else None

    async def edit(self, refs: Mapping[str, Any], message_id: str, author: str, text: str) -> None:
        place = _Place.of(refs)
        name = plain(author, 64).text
        room = MAX_TEXT - utf16_length(f"💬 {place.tag}{name}: ")
        said = _said(place, name, plain(text, room).text)
        await self._call(
            place.chat_id,
            lambda: self.bot.edit_message_text(
                said, chat_id=place.chat_id, message_id=int(message_id), parse_mode=ParseMode.HTML
            ),
        )

    async def post_file(self, refs: Mapping[str, Any], author: str, file: Attachment) -> None:
        place = _Place.of(refs)
        caption = plain(f"📎 {place.tag}{author}", MAX_CAPTION).text
        reply = (
            None if place.thread_id else ReplyParameters(place.message_id, allow_sending_without_reply=True)
        )
        try:
            await self._call(
                place.chat_id,
                lambda: self.bot.send_document(
                    place.chat_id,
                    upload(file),
                    caption=caption,
                    message_thread_id=place.thread_id,
                    reply_parameters=reply,
                ),
            )
        except TelegramError as exc:
            raise SurfaceError(f"telegram refused a file: {exc.message}", permanent=True) from exc

    async def note(self, refs: Mapping[str, Any], text: str) -> None:
        place = _Place.of(refs)
        await self._post(place, html.escape(place.tag + plain(text, MAX_TEXT - len(place.tag)).text))

    async def log(self, view: HandoffView, summary: str, transcript: str | None) -> None:
        """A line per transition in the log chat (or topic); on close, the transcript file with it."""
        chat, thread_id = self.config.log_chat_id, self.config.log_thread_id
        if chat is None:
            return
        line = f"📋 {summary}\n{view.platform} user {view.user_name} ({view.user_id})"
        if transcript is None:
            await self._call(
                chat, lambda: self.bot.send_message(chat, plain(line).text, message_thread_id=thread_id)
            )
            return
        document = InputFile(transcript.encode(), filename=f"handoff-{view.handoff_id}.txt")
        await self._call(
            chat,
            lambda: self.bot.send_document(
                chat, document, caption=plain(line, MAX_CAPTION).text, message_thread_id=thread_id
            ),
        )

    async def audit(self, summary: str) -> None:
        chat, thread_id = self.config.log_chat_id, self.config.log_thread_id
        if chat is not None:
            text = plain(summary).text
            await self._call(chat, lambda: self.bot.send_message(chat, text, message_thread_id=thread_id))

    # -- moderators ----------------------------------------------------------------------------------

    async def is_moderator(self, user_id: int) -> bool:
        """Listed in `moderators`, or (if members count) a member of the moderator chat right now,
        as getChatMember said within the last `membership_cache_seconds`."""
        if user_id in self.config.moderators:
            return True
        if not self.config.members_are_moderators:
            return False
        now = time.monotonic()
        cached = self._members.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            member = await self._call(None, lambda: self.bot.get_chat_member(self.chat_id, user_id))
            verdict = member.status in MODERATOR_STATUSES
        except BadRequest:  # "user not found": never seen in the chat
            verdict = False
        if len(self._members) >= _MEMBERS_KEPT:
            self._members = {k: v for k, v in self._members.items() if v[1] > now}
        self._members[user_id] = (verdict, now + self.config.membership_cache_seconds)
        return verdict

    async def on_press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Claim / Resolve / Return: moderators only; the loser of a claim race is told who won."""
        query = update.callback_query
        press = desk_press(query.data) if query else None
        if query is None or press is None:
            return
        action, handoff_id = press
        user = query.from_user
        if not await self.is_moderator(user.id):
            await self._answer(query, self.words.not_moderator, alert=True)
            return
        moderator = (f"{NAME}:{user.id}", user.full_name)
        if action is DeskAction.CLAIM:
            outcome = await self.handoffs.claim(handoff_id, *moderator)
            if outcome.won:
                await self._answer(query, self.words.claimed.format(id=handoff_id))
            elif outcome.claimer_name is not None:
                name = plain(outcome.claimer_name, 100).text
                await self._answer(
                    query,
                    self.words.already_claimed.format(name=name),
                    alert=True,
                )
            else:
                await self._answer(query, self.words.closed, alert=True)
            return
        status, done = (
            (HandoffStatus.RESOLVED, self.words.resolved)
            if action is DeskAction.RESOLVE
            else (HandoffStatus.RETURNED, self.words.returned)
        )
        if await self.handoffs.close(handoff_id, status, *moderator):
            await self._answer(query, done.format(id=handoff_id))
        else:
            await self._answer(query, self.words.closed, alert=True)

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A moderator wrote in the moderator chat: pass it to the user if they hold the claim.

        Messages from one topic are handled one at a time in arrival order: the lock is taken before
        the first await, and asyncio wakes its waiters first in, first out.
        """
        message = update.message
        if message is None or message.from_user is None:
            return
        files = attachments_of(message)
        text = message.text or message.caption or ""
        if not text and not files:
            return
        async with self.in_order(message):
            handoff_id = await self.handoff_of(message)
            if handoff_id is None:
                return
            user = message.from_user
            if not await self.is_moderator(user.id):
                await self.reply_to(message, self.words.not_moderator)
                return
            answer = await self.handoffs.cases.plain_message(
                handoff_id,
                f"{NAME}:{user.id}",
                user.full_name,
                text,
                files,
                from_desk=NAME,
                origin=_origin(message),
            )
            if answer is not None:
                await self.reply_to(message, answer)

    async def on_edit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A moderator edited a reply in the moderator chat: the user's copy is edited to match.
        (Telegram tells bots of edits, never of deletions.)"""
        message = update.edited_message
        if message is None or message.from_user is None:
            return
        text = message.text or message.caption or ""
        async with self.in_order(message):
            await self._mirror.moderator_edited(_origin(message), message.from_user.full_name, text)

    def in_order(self, message: Message) -> asyncio.Lock:
        """The lock of the message's topic (or chat): moderators' messages and commands there are handled
        one at a time, in arrival order, since updates are handled concurrently. Take it before the
        first await; asyncio wakes its waiters first in, first out."""
        key = (message.chat_id, message.message_thread_id if message.is_topic_message else None)
        lock = self._order.get(key)
        if lock is None:
            lock = self._order[key] = asyncio.Lock()
        return lock

    async def handoff_of(self, message: Message) -> int | None:
        """The open handoff a moderator's message (or `/block`) belongs to: its topic's, or, outside
        topics, the one tagged on the desk message it replies to."""
        if message.is_topic_message and message.message_thread_id is not None:
            key = topic_key(message.chat_id, message.message_thread_id)
            return await self.handoffs.open_handoff_at(NAME, "topic", key)
        replied = message.reply_to_message
        if replied is None or replied.from_user is None or replied.from_user.id != self.bot.id:
            return None
        tag = _TAG.search((replied.text or "").partition("\n")[0])
        if tag is None:
            return None
        return await self.handoffs.open_handoff_at(NAME, "handoff_id", int(tag.group(1)))

    # -- requests ------------------------------------------------------------------------------------

    async def _create_topic(self, view: HandoffView) -> int | None:
        name = plain(f"#{view.handoff_id} {view.user_name} · {view.platform}", 128).text
        try:
            topic = await self._call(self.chat_id, lambda: self.bot.create_forum_topic(self.chat_id, name))
        except BadRequest as exc:
            log.warning(
                "telegram desk: cannot open topics in chat %s (%s); posting handoffs in the chat itself "
                "until restarted",
                self.chat_id,
                exc.message,
            )
            self._forum = False
            return None
        return topic.message_thread_id

    async def _post(self, place: _Place, text: str) -> Message:
        """An HTML message about a handoff: in its topic, or as a reply to its notification."""
        reply = (
            None if place.thread_id else ReplyParameters(place.message_id, allow_sending_without_reply=True)
        )
        return await self._call(
            place.chat_id,
            lambda: self.bot.send_message(
                place.chat_id,
                text,
                parse_mode=ParseMode.HTML,
                message_thread_id=place.thread_id,
                reply_parameters=reply,
            ),
        )

    async def reply_to(self, message: Message, text: str) -> None:
        """Answer a moderator's message where it was written."""
        thread_id = message.message_thread_id if message.is_topic_message else None
        await self._call(
            message.chat_id,
            lambda: self.bot.send_message(
                message.chat_id,
                text,
                message_thread_id=thread_id,
                reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
            ),
        )

    async def _answer(self, query: CallbackQuery, text: str, *, alert: bool = False) -> None:
        await self._call(None, lambda: query.answer(text, show_alert=alert))

    async def _call(self, chat_id: int | None, request: Callable[[], Awaitable[T]]) -> T:
        """One Bot API request paid from the shared budgets: bot-wide, and the chat's and group's for
        anything posted in a chat. A 429 that still happens is waited out up to `max_retry_after`."""
        budgets = (self.budgets.bot,) if chat_id is None else self.budgets.for_chat(chat_id, chat_id < 0)
        while True:
            await acquire_all(budgets)
            try:
                return await request()
            except RetryAfter as exc:
                metrics.PLATFORM_RATE_LIMITED.labels("telegram").inc()
                seconds = _seconds(exc)
                if seconds > self.max_retry_after:
                    raise
                log.warning("telegram desk: flood control in chat %s, waiting %.0fs", chat_id, seconds)
                await asyncio.sleep(seconds)


def _origin(message: Message) -> Origin:
    """A moderator's message, as its copy in the user's chat is remembered by."""
    return Origin(desk_side(NAME), str(message.chat_id), str(message.message_id))


def _said(place: _Place, name: str, text: str) -> str:
    """A user's message (or part of one) as the desk shows it, headed by who wrote it."""
    return f"💬 {place.tag}<b>{html.escape(name)}</b>: {html.escape(text)}"


def notification(view: HandoffView, mention: str) -> str:
    """The notification as Telegram HTML; everything from users and agents escaped, and cut so the
    whole fits in one message. The mention (the ping) shows only while nobody has claimed it."""
    escape = html.escape
    lines = [
        f"🆘 <b>Handoff #{view.handoff_id}</b> · {escape(view.platform)}",
        f"<b>User:</b> {escape(plain(view.user_name, _NAME_UNITS).text)} (id {escape(view.user_id)})",
        f"<b>Reason:</b> {escape(plain(_reason(view) or '-', _REASON_UNITS).text)}",
        f"<b>Status:</b> {escape(_status(view))}",
    ]
    if view.priority:
        lines.insert(3, f"<b>Priority:</b> {escape(view.priority)}")
    if view.jump_url and view.jump_url.startswith(_LINKABLE):
        lines.append(f'<a href="{escape(view.jump_url)}">Open the conversation</a>')
    if view.earlier_cases:
        lines.append(f"<b>Earlier cases:</b> {view.earlier_cases}")
        lines += [escape(plain(line, _ENTRY_UNITS).text) for line in past_lines(view.history, past_link)]
    recent = _recent(view.recent)
    if recent:
        lines += ["", "<b>Recent messages</b>", f"<blockquote expandable>{escape(recent)}</blockquote>"]
    if mention and view.status is HandoffStatus.REQUESTED:
        lines += ["", mention]
    return "\n".join(lines)


def _reason(view: HandoffView) -> str:
    return f"{view.intake_label}: {view.reason}" if view.intake_label else view.reason


def _status(view: HandoffView) -> str:
    claimer, closer = plain(view.claimed_by_name or "?", 64).text, plain(view.closed_by or "?", 64).text
    status = {
        HandoffStatus.REQUESTED: "⏰ still waiting, escalated" if view.escalated else "⏳ waiting",
        HandoffStatus.CLAIMED: f"🙋 claimed by {claimer}",
        HandoffStatus.RESOLVED: f"✅ resolved by {closer}",
        HandoffStatus.RETURNED: f"↩️ returned to the assistant by {closer}",
        HandoffStatus.EXPIRED: "⌛ expired: nobody claimed it in time",
    }[view.status]
    if view.overdue and view.status in OPEN_HANDOFF_STATUSES:
        return f"{status} · {SlaNotices.mark}"
    return status


def _recent(entries: Sequence[tuple[str, str]]) -> str:
    """The newest entries that fit in the notification, oldest first; "…" where older ones were left out."""
    lines: list[str] = []
    used = 0
    for role, text in reversed(entries):
        line = f"{role}: {plain(text, _ENTRY_UNITS).text}"
        used += utf16_length(line) + 1
        if used > _RECENT_UNITS:
            lines.append("…")
            break
        lines.append(line)
    return "\n".join(reversed(lines))


def jump_link(conversation: Conversation) -> str | None:
    """A link moderators can open to the user's Telegram conversation: only a forum topic has one
    (t.me/c/ links need a message id, and a private chat with the bot has no link at all)."""
    chat = conversation.chat_id
    if conversation.platform != NAME or not conversation.thread_id or not chat.startswith("-100"):
        return None
    return f"https://t.me/c/{chat.removeprefix('-100')}/{conversation.thread_id}"


def past_link(case: PastCase) -> str | None:
    """A past case's topic on this desk, if it had one (t.me/c/ links open it for the chat's members)."""
    refs = case.refs.get(NAME) or {}
    chat, thread = str(refs.get("chat_id", "")), refs.get("thread_id")
    if not thread or not chat.startswith("-100"):
        return None
    return f"https://t.me/c/{chat.removeprefix('-100')}/{thread}"
