"""The Surface for one Telegram chat or forum topic: messages, edits, photos, typing, and drafts.

Every request spends from budgets shared by all replies (bot-wide, per chat, per group), sized below
Telegram's limits so concurrent replies stay clear of 429s. A 429 that still happens is waited out for
this reply only. The surface also keeps what each message shows, so an edit that would not change the
rendered message (two markdown sources can render alike) is never sent: Telegram answers those with
"message is not modified".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar, TypeVar

from telegram import Bot, ForceReply, Message, ReplyParameters
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from agents.base import Attachment, Button, Media
from bridges.budget import RateBudget, WindowBudget, acquire_all
from bridges.buttons import ButtonStore
from bridges.controls import Control
from bridges.split import utf16_length
from bridges.surface import SurfaceError
from bridges.telegram.config import TelegramConfig
from bridges.telegram.files import UPLOAD_LIMIT, upload
from bridges.telegram.formatting import MAX_CAPTION, MAX_TEXT, Formatted, plain, to_telegram
from bridges.telegram.keyboards import keyboard
from ops import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
_DRAFT_IDS = itertools.count(secrets.randbelow(2**30) + 1)
_BUDGETS_KEPT = 10_000
GROUP_LATENCY_ALLOWANCE = 1.0
"""Seconds a request may take from taking a group's token to reaching Telegram (a button store write,
the network): the group's window is this much longer than Telegram's, so its cap holds there too."""


class Flooded(SurfaceError):
    """Telegram answered 429 and the caller asked not to wait it out here."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"flood control: retry after {retry_after:g}s")
        self.retry_after = retry_after


class EntitiesRejected(SurfaceError):
    """Telegram refused the formatting ("can't parse entities"); the plain text will do."""


class Budgets:
    """One budget per scope, shared by every surface of that scope."""

    def __init__(self, config: TelegramConfig) -> None:
        self.config = config
        self.bot = RateBudget(config.messages_per_second, 1.0, burst=config.bot_burst)
        self._chats: dict[int, RateBudget] = {}
        self._groups: dict[int, RateBudget] = {}

    def for_chat(self, chat_id: int, is_group: bool) -> tuple[RateBudget, ...]:
        # A chat's budget starts with one token: Telegram's bucket for the chat may still hold requests
        # made just before a restart, and one request is all a first text needs.
        chat = _kept(
            self._chats,
            chat_id,
            lambda: RateBudget(
                self.config.chat_messages_per_second, 1.0, burst=self.config.chat_burst, initial=1
            ),
        )
        if not is_group:
            return (self.bot, chat)
        group = _kept(
            self._groups,
            chat_id,
            lambda: WindowBudget(
                self.config.group_messages, self.config.group_window_seconds + GROUP_LATENCY_ALLOWANCE
            ),
        )
        return (self.bot, chat, group)


def _kept(budgets: dict[int, RateBudget], key: int, new: Callable[[], RateBudget]) -> RateBudget:
    """The budget of `key`, made on first use; chats whose budget is full again are forgotten when
    too many are kept."""
    budget = budgets.get(key)
    if budget is None:
        if len(budgets) >= _BUDGETS_KEPT:
            for stale in [k for k, b in budgets.items() if b.full()]:
                del budgets[stale]
        budget = budgets[key] = new()
    return budget


class _Receipted(RateBudget):
    """A shared budget as one surface hands it to the renderer: each token spent through it leaves a
    receipt, so the surface knows its next request is paid for. Requests made without one (the Relay's
    notices call `send` directly) pay for themselves, so they count towards the limits too."""

    def __init__(self, shared: RateBudget) -> None:  # no super().__init__: every call is delegated
        self.shared = shared
        self.receipts = 0

    def available(self, reserve: int = 0) -> bool:
        return self.shared.available(reserve)

    def full(self) -> bool:
        return self.shared.full()

    def take(self) -> None:
        self.shared.take()
        self.receipts += 1

    async def acquire(self, *, urgent: bool = False) -> None:
        await self.shared.acquire(urgent=urgent)
        self.receipts += 1


@dataclass(frozen=True)
class Place:
    chat_id: int
    thread_id: int | None = None
    is_group: bool = False


@dataclass
class TelegramSurface:
    """Send-then-edit streaming; used in groups, topics, and wherever drafts are off or refused."""

    bot: Bot
    place: Place
    shared: Sequence[RateBudget]
    """The scopes' budgets, most general first."""
    edit_interval: float
    buttons: ButtonStore
    max_retry_after: float = 60.0
    reply_to: int | None = None
    """The user's message the first reply message answers (groups: so people see who it is for)."""
    max_length: int = MAX_TEXT
    budgets: Sequence[RateBudget] = field(init=False, default=())
    """What the renderer spends from: the shared budgets, the last one leaving receipts."""
    edit_budgets: Sequence[RateBudget] = field(init=False, default=())
    """Telegram counts an edit like a new message."""
    typing_budgets: Sequence[RateBudget] = field(init=False, default=())
    """Bot-wide only: a chat action is no message, so chat and group flood control leave it be."""
    _shown: dict[str, tuple[Formatted, tuple[Button, ...]]] = field(init=False, default_factory=dict)
    _plain: bool = field(init=False, default=False)
    control_buttons: ClassVar[frozenset[Control]] = frozenset(Control)

    def __post_init__(self) -> None:
        *general, last = self.shared
        self._ledger = _Receipted(last)
        self.budgets = self.edit_budgets = (*general, self._ledger)
        self.typing_budgets = tuple(self.shared[:1])  # the bot-wide budget

    @staticmethod
    def measure(text: str) -> int:
        return utf16_length(text)

    async def send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        await self._paid()
        return await self._send(text, buttons)

    async def edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        await self._paid()
        await self._edit(message_id, text, buttons, final=final)

    async def send_media(self, media: Media) -> str:
        await self._paid()
        return await self._send_media(media)

    @property
    def max_upload(self) -> int:
        return UPLOAD_LIMIT

    async def send_file(self, file: Attachment, caption: str = "") -> str:
        await self._paid()
        message = await self._call(
            lambda: self.bot.send_document(
                self.place.chat_id,
                upload(file),
                caption=plain(caption, MAX_CAPTION).text or None,
                message_thread_id=self.place.thread_id,
            )
        )
        return str(message.message_id)

    async def ask(self, text: str, placeholder: str) -> str:
        """Post `text` (plain) asking for an answer: the user's app opens a reply to it (ForceReply).
        For private chats: in a group it would open for every member. Returns its id."""
        await self._paid()
        markup = ForceReply(input_field_placeholder=placeholder)
        message = await self._call(
            lambda: self.bot.send_message(
                self.place.chat_id,
                plain(text).text,
                message_thread_id=self.place.thread_id,
                reply_markup=markup,
            )
        )
        return str(message.message_id)

    async def final_id(self, message_id: str) -> str:
        return message_id

    async def typing(self) -> None:
        """Paid by the caller from `typing_budgets`."""
        await self._call(
            lambda: self.bot.send_chat_action(
                self.place.chat_id, ChatAction.TYPING, message_thread_id=self.place.thread_id
            ),
            wait_out_flood=False,
        )

    async def _paid(self) -> None:
        """The renderer pays before each request it makes; any other caller pays here."""
        if self._ledger.receipts:
            self._ledger.receipts -= 1
        else:
            await self._pay()

    async def _pay(self) -> None:
        """For a request beyond the one the caller paid for (a fallback, posting a draft)."""
        await acquire_all(self.shared)

    async def _send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        markup = await keyboard(buttons, self.buttons)
        reply = ReplyParameters(self.reply_to, allow_sending_without_reply=True) if self.reply_to else None

        async def post(formatted: Formatted) -> Message:
            return await self.bot.send_message(
                self.place.chat_id,
                formatted.text,
                entities=formatted.message_entities(),
                message_thread_id=self.place.thread_id,
                reply_markup=markup,
                reply_parameters=reply,
            )

        formatted, message = await self._with_fallback(text, post)
        self.reply_to = None
        message_id = str(message.message_id)
        self._shown[message_id] = (formatted, tuple(buttons))
        return message_id

    async def _edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        shown = self._shown.get(message_id)
        wanted = tuple(buttons)
        markup = await keyboard(buttons, self.buttons)

        async def change(formatted: Formatted) -> None:
            if shown == (formatted, wanted):
                return  # renders exactly as shown: Telegram would answer "message is not modified"
            await self.bot.edit_message_text(
                formatted.text,
                self.place.chat_id,
                int(message_id),
                entities=formatted.message_entities(),
                reply_markup=markup,
            )

        formatted, _ = await self._with_fallback(text, change)
        self._shown[message_id] = (formatted, wanted)

    async def _send_media(self, media: Media) -> str:
        caption = to_telegram(media.caption, MAX_CAPTION) if media.caption else Formatted("")
        senders: dict[str, Callable[..., Awaitable[Message]]] = {
            "image": self.bot.send_photo,
            "video": self.bot.send_video,
            "audio": self.bot.send_audio,
            "file": self.bot.send_document,
        }
        send = senders[media.kind]
        message = await self._call(
            lambda: send(
                self.place.chat_id,
                media.url,
                caption=caption.text or None,
                caption_entities=caption.message_entities(),
                message_thread_id=self.place.thread_id,
            )
        )
        return str(message.message_id)

    def _format(self, text: str) -> Formatted:
        return plain(text) if self._plain else to_telegram(text)

    async def _with_fallback(
        self, text: str, request: Callable[[Formatted], Awaitable[T]], *, wait_out_flood: bool = True
    ) -> tuple[Formatted, T]:
        """Make `request` with the rendered text; if Telegram refuses the entities, with the plain text."""
        formatted = self._format(text)
        try:
            return formatted, await self._call(lambda: request(formatted), wait_out_flood=wait_out_flood)
        except EntitiesRejected as exc:
            log.warning("telegram refused the formatting, sending plain text from now on: %s", exc)
            self._plain = True
        formatted = plain(text)
        await self._pay()
        return formatted, await self._call(lambda: request(formatted), wait_out_flood=wait_out_flood)

    async def _call(self, request: Callable[[], Awaitable[T]], *, wait_out_flood: bool = True) -> T:
        """One Bot API request, with Telegram's errors turned into `SurfaceError`s."""
        while True:
            try:
                return await request()
            except RetryAfter as exc:
                metrics.PLATFORM_RATE_LIMITED.labels("telegram").inc()
                seconds = _seconds(exc)
                if not wait_out_flood or seconds > self.max_retry_after:
                    raise Flooded(seconds) from exc
                log.warning("telegram flood control in chat %s: waiting %.0fs", self.place.chat_id, seconds)
                await asyncio.sleep(seconds)
                await self._pay()
            except BadRequest as exc:
                if "can't parse entities" in exc.message.lower():
                    raise EntitiesRejected(exc.message, permanent=True) from exc
                raise SurfaceError(exc.message, permanent=True) from exc
            except Forbidden as exc:
                raise SurfaceError(exc.message, permanent=True) from exc
            except TelegramError as exc:  # network trouble, timeouts, server errors: worth a retry
                raise SurfaceError(exc.message) from exc


def _seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)  # int vs timedelta, depending on PTB_TIMEDELTA
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass
class _Draft:
    draft_id: int
    text: str = ""
    message_id: str | None = None
    """The real message once the draft has been posted."""


@dataclass
class DraftingSurface(TelegramSurface):
    """Private chats: the reply streams as a native draft and is posted as a real message once complete.

    The renderer starts a new message only once every earlier one is final, so drafts still open are
    posted for real when the renderer gives a message its final text (one request, not a draft update
    and then a post), when the next message starts, when buttons are attached (drafts cannot carry
    them), and in `finish()` once the reply is over. If Telegram refuses a draft (flood control, or drafts
    unavailable), its text is posted at once and the reply carries on with edits.
    """

    _drafts: dict[str, _Draft] = field(init=False, default_factory=dict)
    control_buttons: ClassVar[frozenset[Control]] = frozenset({Control.REGENERATE})
    """No Stop button: a draft cannot carry one, and posting the draft to hold it would end the drafting
    (/stop still works)."""

    async def _send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        await self.finish()
        if buttons:
            return await super()._send(text, buttons)
        draft = _Draft(next(_DRAFT_IDS))
        key = f"draft:{draft.draft_id}"
        self._drafts[key] = draft
        try:
            await self._update(draft, text)
        except SurfaceError:
            del self._drafts[key]  # the renderer will send again: this draft must not be posted too
            raise
        return key

    async def _edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        draft = self._drafts.get(message_id)
        if draft is None:
            await super()._edit(message_id, text, buttons)
        elif draft.message_id is not None:
            await super()._edit(draft.message_id, text, buttons)
        elif buttons or final:  # drafts cannot carry buttons; final text is posted in this request
            draft.text = text
            await self._post(draft, buttons)
        else:
            await self._update(draft, text)

    async def _send_media(self, media: Media) -> str:
        await self.finish()
        return await super()._send_media(media)

    async def final_id(self, message_id: str) -> str:
        """A draft's real message, posting it now if it is still a draft (the reply is over)."""
        draft = self._drafts.get(message_id)
        if draft is None:
            return message_id
        if draft.message_id is None:
            await self._pay()
            await self._post(draft)
        return draft.message_id or message_id

    async def finish(self) -> None:
        """Post every draft not yet posted: the reply (or its earlier messages) is complete."""
        for draft in [d for d in self._drafts.values() if d.message_id is None]:
            await self._pay()
            await self._post(draft)

    async def _update(self, draft: _Draft, text: str) -> None:
        if text == draft.text:
            return
        draft.text = text

        async def show(formatted: Formatted) -> bool:
            return await self.bot.send_message_draft(
                self.place.chat_id,
                draft.draft_id,
                formatted.text,
                message_thread_id=self.place.thread_id,
                entities=formatted.message_entities(),
            )

        try:
            await self._with_fallback(text, show, wait_out_flood=False)
        except SurfaceError as exc:
            log.info(
                "draft refused in chat %s (%s); posting the text and editing it", self.place.chat_id, exc
            )
            if isinstance(exc, Flooded):
                await asyncio.sleep(min(exc.retry_after, self.max_retry_after))
            await self._pay()
            await self._post(draft)

    async def _post(self, draft: _Draft, buttons: Sequence[Button] = ()) -> None:
        draft.message_id = await TelegramSurface._send(self, draft.text, buttons)


class Surfaces:
    """Builds the surface for each reply, all sharing one set of budgets."""

    def __init__(self, bot: Bot, config: TelegramConfig, edit_interval: float, buttons: ButtonStore) -> None:
        self.bot = bot
        self.config = config
        self.edit_interval = edit_interval
        self.buttons = buttons
        self.budgets = Budgets(config)

    def for_reply(self, message: Message) -> TelegramSurface:
        """Drafts in private chats (if enabled); in groups, send and edit, answering the user's message."""
        place = _place(message)
        if place.is_group or not self.config.drafts:
            return self._build(
                TelegramSurface, place, reply_to=message.message_id if place.is_group else None
            )
        return self._build(DraftingSurface, place)

    def plain(self, message: Message) -> TelegramSurface:
        """For short notices (command answers): real messages, no drafts."""
        place = _place(message)
        return self._build(TelegramSurface, place, reply_to=message.message_id if place.is_group else None)

    def for_place(self, platform: str, chat_id: str, thread_id: str) -> TelegramSurface | None:
        """A `SurfaceFactory`: reach a chat outside a reply (handoff notices, crash recovery)."""
        if platform != "telegram":
            return None
        place = Place(int(chat_id), int(thread_id) if thread_id else None, is_group=int(chat_id) < 0)
        return self._build(TelegramSurface, place)

    def _build(
        self, kind: type[TelegramSurface], place: Place, reply_to: int | None = None
    ) -> TelegramSurface:
        return kind(
            self.bot,
            place,
            self.budgets.for_chat(place.chat_id, place.is_group),
            self.edit_interval,
            self.buttons,
            max_retry_after=self.config.max_retry_after,
            reply_to=reply_to,
        )


def _place(message: Message) -> Place:
    thread_id = message.message_thread_id if message.is_topic_message else None
    return Place(message.chat.id, thread_id, is_group=message.chat.type != ChatType.PRIVATE)
