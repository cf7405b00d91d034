"""The Telegram desk's commands, in a case's topic (or as a reply to one of its desk messages):
/note /reply /areply /snippet /asnippet /unclaim /transfer /close /history, and /search and /ratings
anywhere in the moderators' chat. Only moderators; anyone else is answered in the desk, which only
moderators read.

The work is done by `bridges.cases.Cases`, shared with the Discord desk; this module reads the command
and answers the moderator.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Message, Update, User
from telegram.error import BadRequest
from telegram.ext import Application, CommandHandler, ContextTypes, filters

from bridges.cases import past_lines
from bridges.ratings import MAX_REPORT_DAYS, REPORT_DAYS, RatingWords
from bridges.registry import blockable
from bridges.telegram.desk import NAME, TelegramDesk, past_link

log = logging.getLogger(__name__)

COMMANDS = (
    ("note", "Keep a note in the case; the user does not see it"),
    ("reply", "Send the user a message under your name"),
    ("areply", "Send the user a message under the staff name"),
    ("snippet", "Send a saved reply, or: add NAME TEXT, edit NAME TEXT, remove NAME, list"),
    ("asnippet", "Send a saved reply under the staff name"),
    ("unclaim", "Let the case go back to waiting for a moderator"),
    ("transfer", "Hand the case to another moderator: reply to their message, or give their id"),
    ("close", "Close the case: /close [in 30m] [reason]"),
    ("history", "The user's earlier cases"),
    ("search", "Find cases: /search [PLATFORM ID] WORDS"),
    ("ratings", "This desk's satisfaction ratings: /ratings [DAYS]"),
)
_ARGS = re.compile(r"\S+\s?(.*)", re.DOTALL)
DAYS = re.compile(r"[0-9]{1,4}")
"""A number of days as typed: ASCII digits only (`isdigit` also takes "²"), and never a huge one."""

Handler = Callable[[Message, int, str, str, str], Awaitable[str | None]]
"""(message, case id, moderator id, moderator name, the text after the command) -> the answer."""


class DeskCommands:
    def __init__(self, desk: TelegramDesk) -> None:
        self.desk = desk
        self.cases = desk.handoffs.cases

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        """Commands in the moderators' chat; added before the bridge's own handlers."""
        in_desk = filters.Chat(self.desk.chat_id) & filters.UpdateType.MESSAGE
        in_case: dict[str, Handler] = {
            "note": self._note,
            "reply": self._reply,
            "areply": self._areply,
            "snippet": self._snippet,
            "asnippet": self._asnippet,
            "unclaim": self._unclaim,
            "transfer": self._transfer,
            "close": self._close,
            "history": self._history,
        }
        for name, handler in in_case.items():
            app.add_handler(CommandHandler(name, self._in_case(handler), filters=in_desk))
        app.add_handler(CommandHandler("search", self._anywhere(self._search), filters=in_desk))
        app.add_handler(CommandHandler("ratings", self._anywhere(self._ratings), filters=in_desk))

    def _in_case(
        self, handler: Handler
    ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
        async def command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message = update.message
            if message is None or message.from_user is None:
                return
            async with self.desk.in_order(message):  # after the plain messages written before it
                await self._run(handler, message, message.from_user)

        return command

    async def _run(self, handler: Handler, message: Message, user: User) -> None:
        if not await self.desk.is_moderator(user.id):
            await self.desk.reply_to(message, self.cases.words.not_moderator)
            return
        try:
            handoff_id = await self.desk.handoff_of(message)
            args = _args(message)
            answer: str | None = self.cases.words.not_in_case
            if handoff_id is None and handler == self._snippet:  # managing snippets needs no case
                saved, answer = await self.cases.snippet_command(args.split(), f"{NAME}:{user.id}")
                answer = self.cases.words.not_in_case if saved is not None else answer
            elif handoff_id is not None:
                answer = await handler(message, handoff_id, f"{NAME}:{user.id}", user.full_name, args)
        except Exception:
            log.exception("telegram desk: a command failed")
            answer = self.cases.words.failed
        if answer:
            await self.desk.reply_to(message, answer)

    async def _note(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        if not text.strip():
            return self.cases.words.empty
        ok = await self.cases.note(case, mod_id, name, text, from_desk=NAME)
        return self.cases.words.noted if ok else self.cases.words.closed_already

    async def _reply(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        return await self.cases.reply(case, mod_id, name, text, anonymous=False)

    async def _areply(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        return await self.cases.reply(case, mod_id, name, text, anonymous=True)

    async def _snippet(
        self, message: Message, case: int, mod_id: str, name: str, text: str, *, anonymous: bool = False
    ) -> str | None:
        saved, answer = await self.cases.snippet_command(text.split(), mod_id)
        if saved is None:
            return answer
        return await self.cases.reply(case, mod_id, name, saved, anonymous=anonymous or None)

    async def _asnippet(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        return await self._snippet(message, case, mod_id, name, text, anonymous=True)

    async def _unclaim(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        return await self.cases.unclaim(case, mod_id, name)

    async def _transfer(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        """To the author of the message replied to (not the topic's start), or to the id given."""
        replied = message.reply_to_message
        person = replied.from_user if replied is not None and replied.forum_topic_created is None else None
        if person is not None and person.is_bot:  # without topics, a case is named by replying to the bot
            person = None
        if person is not None:
            to_id, to_name = person.id, person.full_name
        elif text.strip().isdigit():
            to_id = int(text.strip())
            try:
                member = await self.desk.bot.get_chat_member(self.desk.chat_id, to_id)
                to_name = member.user.full_name
            except BadRequest:
                to_name = f"moderator {to_id}"
        else:
            return self.cases.words.transfer_usage
        if not await self.desk.is_moderator(to_id):
            return self.cases.words.not_a_moderator.format(name=to_name)
        return await self.cases.transfer(case, mod_id, name, f"{NAME}:{to_id}", to_name)

    async def _close(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        return await self.cases.close(case, mod_id, name, text)

    async def _history(self, message: Message, case: int, mod_id: str, name: str, text: str) -> str | None:
        view = await self.desk.handoffs.view(case)
        count, cases = await self.cases.history(case)
        if not count:
            return self.cases.words.history_none.format(user=view.user_name)
        head = self.cases.words.history_head.format(user=view.user_name, count=count)
        return "\n".join([head, *past_lines(cases, past_link)])

    def _anywhere(
        self, handler: Callable[[Message], Awaitable[str]]
    ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
        """A command for moderators anywhere in the desk's chat; `handler` makes the answer."""

        async def command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message = update.message
            if message is None or message.from_user is None:
                return
            if not await self.desk.is_moderator(message.from_user.id):
                await self.desk.reply_to(message, self.cases.words.not_moderator)
                return
            await self.desk.reply_to(message, await handler(message))

        return command

    async def _search(self, message: Message) -> str:
        words = _args(message).split()
        who: tuple[str | None, str | None] = (None, None)
        if len(words) >= 2 and words[0].lower() in blockable() and words[1].lstrip("-").isdigit():
            who, words = (words[0].lower(), words[1]), words[2:]
        if not words and who == (None, None):
            return self.cases.words.search_usage
        found = await self.cases.search(" ".join(words), *who)
        answer = "\n".join([self.cases.words.found_head, *past_lines(found, past_link)]) if found else None
        return answer or self.cases.words.found_none

    async def _ratings(self, message: Message) -> str:
        """`/ratings [DAYS]`: this desk's average over the period."""
        words = _args(message).split() or [str(REPORT_DAYS)]
        days = int(words[0]) if len(words) == 1 and DAYS.fullmatch(words[0]) else 0
        if not 1 <= days <= MAX_REPORT_DAYS:
            usage = self.desk.handoffs.catalogue.desk(RatingWords).usage
            return usage.format(most=MAX_REPORT_DAYS, default=REPORT_DAYS)
        return await self.desk.handoffs.ratings.report(NAME, days)


def _args(message: Message) -> str:
    """What follows the command (`/note@bot text` too), newlines kept."""
    found = _ARGS.fullmatch(message.text or "")
    return found.group(1).strip() if found else ""
