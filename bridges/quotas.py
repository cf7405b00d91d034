"""Quotas (`[quotas]`): how many turns and tokens each user, and each place, may use of the assistant
per UTC calendar day or month.

A turn's message is counted when the turn begins, in the transaction that records it, and only while
every limit has room: one conditional UPDATE per scope, so processes sharing a database never both take
the last one. The tokens its provider reported are added in the transaction that finishes the turn, so
a reply may cross the token limit; the next message is refused. A refused message never reaches the
agent, and the user is told which limit and when it resets. Messages to a human moderator never count.

Periods are calendar periods in UTC, not rolling windows: one counter row per scope and period, and a
reset time the user can be told exactly ("at 00:00 UTC, in 3 h 10 min"). Rows of periods long over are
pruned now and then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Turn, Usage
from bridges.catalogue import Catalogue, Strings
from bridges.outage import survives_db_outage
from bridges.render import RenderResult
from bridges.surface import Inbound
from models import UsageCounter
from models.queries import insert_ignoring_duplicates
from settings import QuotaLimits, QuotaSettings

Scope = Literal["user", "place"]
Kind = Literal["messages", "tokens"]

KEPT = timedelta(days=62)
"""Counters of periods that started longer ago than this are pruned: no report looks back that far."""
PRUNE_EVERY = 1000
"""Turns between two prunes."""


class QuotaNotices(Strings, key="quotas"):
    """What a user is told when a limit is reached, and what `/usage` says."""

    user_messages = (
        "You have used all {limit} messages you can send the assistant {period}, so this one was not "
        "sent to it. You can write again {reset}."
    )
    user_tokens = (
        "You have used your share of the assistant {period} ({limit} tokens), so this message was not "
        "sent to it. You can write again {reset}."
    )
    place_messages = (
        "Everyone here together has used the {limit} messages the assistant answers here {period}, so "
        "this one was not sent to it. You can write again {reset}."
    )
    place_tokens = (
        "Everyone here together has used the assistant's share for this place {period} ({limit} tokens), "
        "so this message was not sent to it. You can write again {reset}."
    )
    today = "today"
    this_month = "this month"
    reset_day = "at 00:00 UTC, in {wait}"
    reset_month = "on {date} at 00:00 UTC, in {wait}"
    wait_minutes = "{minutes} min"
    wait_hours = "{hours} h {minutes} min"
    wait_days = "{days} days"
    off = "No usage limits are set for the assistant here."
    report = "{who} {period}: {messages}, {tokens}."
    report_you = "You"
    report_place = "Everyone here"
    not_admin = "Only admins of this place can see someone else's usage."
    not_here = "I can't answer that here."
    counted = "{used} of {limit} {unit}"
    counted_unlimited = "{used} {unit} (no limit)"
    messages_unit = "messages"
    tokens_unit = "tokens"
    resets = "Counters start again {reset}."


CHARS_PER_TOKEN = 4
"""The usual rule of thumb for English text (OpenAI's "about 4 characters per token"), for a turn whose
provider never got to report its usage."""


def spent(inbound: Inbound, turn: Turn, result: RenderResult) -> tuple[Keys, Usage] | None:
    """What a turn costs against the token quotas: the usage its provider reported; for a reply left
    early (stopped, or cut at the length cap), whose stream closed before the provider's report, an
    estimate from the text sent and shown, so a Stop near the end is no way around a token limit."""
    usage = result.usage
    if usage is None and (result.stopped or result.cut):
        prompt = len(turn.text) + sum(len(entry.text) for entry in turn.history)
        usage = Usage(-(-prompt // CHARS_PER_TOKEN), -(-len(result.text) // CHARS_PER_TOKEN))
    return (Keys.of(inbound), usage) if usage is not None else None


@dataclass(frozen=True)
class Keys:
    """Whose counters a turn counts against: the user's, and the place's (none for a place without a
    binding scope, such as the console)."""

    user: str
    place: str | None

    @classmethod
    def of(cls, inbound: Inbound) -> Keys:
        """The user in every place; the place as its widest binding scope (a Discord server, or the
        channel of a DM; a Telegram chat)."""
        return cls.at(inbound.platform, inbound.user_id, inbound.binding_scopes[-1:])

    @classmethod
    def at(cls, platform: str, user_id: str, place: Sequence[tuple[str, str]]) -> Keys:
        """The user's keys with the place given as (binding scope, id), or none."""
        return cls(f"{platform}:{user_id}", ":".join(place[0]) if place else None)


@dataclass(frozen=True)
class Used:
    messages: int = 0
    tokens: int = 0


class Quotas:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        settings: QuotaSettings,
        *,
        now: Callable[[], datetime],
        outage_grace: float,
        catalogue: Catalogue,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalogue = catalogue
        """Where a refusal's words come from, in the user's language."""
        self._now = now
        self.outage_grace = outage_grace
        self._taken = 0

    @property
    def enabled(self) -> bool:
        """Without any limit nothing is counted, and a turn costs no extra statement."""
        return self.settings.enabled

    async def take(self, session: AsyncSession, keys: Keys, now: datetime, *, locale: str) -> str | None:
        """In the turn's transaction: count one message against the user and the place and return None,
        or, if a limit is reached, count nothing and return what to tell the user (in `locale`)."""
        if not self.enabled:
            return None
        start, _ = self.period(now)
        self._taken += 1
        if self._taken % PRUNE_EVERY == 0:
            await session.execute(delete(UsageCounter).where(UsageCounter.period_start < start - KEPT))
        taken: list[tuple[Scope, str]] = []
        for scope, scope_id, limits in self._scopes(keys):
            await _ensure_row(session, scope, scope_id, start)
            room = [UsageCounter.messages < limits.messages] if limits.messages is not None else []
            if limits.tokens is not None:
                room.append(UsageCounter.prompt_tokens + UsageCounter.completion_tokens < limits.tokens)
            counted = await session.execute(
                update(UsageCounter)
                .where(*_row(scope, scope_id, start), *room)
                .values(messages=UsageCounter.messages + 1)
                .execution_options(synchronize_session=False)
            )
            if counted.rowcount == 1:  # type: ignore[attr-defined]
                taken.append((scope, scope_id))
                continue
            for undo_scope, undo_id in taken:  # the other scope's count must not stand either
                await _add(session, undo_scope, undo_id, start, messages=-1)
            used = await self._used(session, scope, scope_id, start)
            return self._refusal(scope, limits, used, now, self.catalogue.words(locale)(QuotaNotices))
        return None

    async def spend(self, session: AsyncSession, keys: Keys, usage: Usage, now: datetime) -> None:
        """In the transaction that finishes the turn: add the tokens its provider reported."""
        if not self.enabled:
            return
        start, _ = self.period(now)
        for scope, scope_id, _limits in self._scopes(keys):
            await _ensure_row(session, scope, scope_id, start)
            await _add(
                session,
                scope,
                scope_id,
                start,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )

    @survives_db_outage
    async def report(self, keys: Keys, say: QuotaNotices, *, user_label: str | None) -> str:
        """What `/usage` says, in the asker's language (`say`): the counters of the user (called
        `user_label`; None leaves the user out) and of the place, with their limits, and when they start
        again."""
        if not self.enabled:
            return say.off
        now = self._now()
        start, _ = self.period(now)
        lines = []
        async with self.db() as session:
            for scope, scope_id, limits in self._scopes(keys):
                if scope == "user" and user_label is None:
                    continue
                used = await self._used(session, scope, scope_id, start)
                lines.append(
                    say.report.format(
                        who=say.report_place if scope == "place" else user_label,
                        period=self._period_words(say),
                        messages=_counted(used.messages, limits.messages, say.messages_unit, say),
                        tokens=_counted(used.tokens, limits.tokens, say.tokens_unit, say),
                    )
                )
        lines.append(say.resets.format(reset=self._reset_words(now, say)))
        return "\n".join(lines)

    def period(self, now: datetime) -> tuple[datetime, datetime]:
        """The UTC calendar day or month `now` falls in, as [start, end)."""
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.settings.period == "day":
            return day, day + timedelta(days=1)
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end

    def _scopes(self, keys: Keys) -> Iterator[tuple[Scope, str, QuotaLimits]]:
        yield "user", keys.user, self.settings.user
        if keys.place is not None:
            yield "place", keys.place, self.settings.place

    @staticmethod
    async def _used(session: AsyncSession, scope: Scope, scope_id: str, start: datetime) -> Used:
        row = (
            await session.execute(
                select(
                    UsageCounter.messages, UsageCounter.prompt_tokens + UsageCounter.completion_tokens
                ).where(*_row(scope, scope_id, start))
            )
        ).first()
        return Used(row[0], row[1]) if row is not None else Used()

    def _refusal(
        self, scope: Scope, limits: QuotaLimits, used: Used, now: datetime, say: QuotaNotices
    ) -> str:
        kind: Kind = (
            "messages" if limits.messages is not None and used.messages >= limits.messages else "tokens"
        )
        notice = getattr(say, f"{scope}_{kind}")
        limit = limits.messages if kind == "messages" else limits.tokens
        return str(notice).format(
            limit=limit, period=self._period_words(say), reset=self._reset_words(now, say)
        )

    def _period_words(self, say: QuotaNotices) -> str:
        return say.today if self.settings.period == "day" else say.this_month

    def _reset_words(self, now: datetime, say: QuotaNotices) -> str:
        _, end = self.period(now)
        wait = _wait_words(end - now, say)
        if self.settings.period == "day":
            return say.reset_day.format(wait=wait)
        return say.reset_month.format(date=end.date().isoformat(), wait=wait)


def _counted(used: int, limit: int | None, unit: str, say: QuotaNotices) -> str:
    if limit is None:
        return say.counted_unlimited.format(used=used, unit=unit)
    return say.counted.format(used=used, limit=limit, unit=unit)


def _wait_words(wait: timedelta, say: QuotaNotices) -> str:
    minutes = max(1, -(-int(wait.total_seconds()) // 60))  # rounded up: never "in 0 min"
    if minutes < 60:
        return say.wait_minutes.format(minutes=minutes)
    if minutes < 48 * 60:
        return say.wait_hours.format(hours=minutes // 60, minutes=minutes % 60)
    return say.wait_days.format(days=round(minutes / (24 * 60)))


def _row(scope: Scope, scope_id: str, start: datetime) -> tuple[ColumnElement[bool], ...]:
    """The counter of one scope in one period (explicit columns: an UPDATE's own expressions name the
    table as well, which `filter_by` cannot tell apart)."""
    return (
        UsageCounter.scope == scope,
        UsageCounter.scope_id == scope_id,
        UsageCounter.period_start == start,
    )


async def _ensure_row(session: AsyncSession, scope: Scope, scope_id: str, start: datetime) -> None:
    await session.execute(
        insert_ignoring_duplicates(session, UsageCounter)
        .values(
            scope=scope,
            scope_id=scope_id,
            period_start=start,
            messages=0,
            prompt_tokens=0,
            completion_tokens=0,
        )
        .on_conflict_do_nothing()
    )


async def _add(
    session: AsyncSession,
    scope: Scope,
    scope_id: str,
    start: datetime,
    *,
    messages: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    await session.execute(
        update(UsageCounter)
        .where(*_row(scope, scope_id, start))
        .values(
            messages=UsageCounter.messages + messages,
            prompt_tokens=UsageCounter.prompt_tokens + prompt_tokens,
            completion_tokens=UsageCounter.completion_tokens + completion_tokens,
        )
        .execution_options(synchronize_session=False)
    )
