"""Every inbound message, recorded the moment it arrives and marked once its turn has taken it.

With the row written before the message waits for its turn, a process killed while messages queue
behind a long reply (the platform had already confirmed them) finds them on its next start
(`bridges/recovery.py`). The same row makes each platform message answered by one process only.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Button
from bridges.batches import Batched
from bridges.outage import DatabaseUnavailable, survives_db_outage
from bridges.surface import Inbound
from models import InboundMessage
from models.queries import insert_ignoring_duplicates

log = logging.getLogger(__name__)

PRUNE_EVERY = 1000
"""Messages recorded between two prunings of old rows."""
KEPT = timedelta(days=2)
"""Rows older than this are pruned: a platform redelivers within hours, and a crash is noticed sooner."""
RETAKEN = "*"
"""Appended to `taken_by` when a restart takes over a message: a redelivery of it is then a duplicate."""


@dataclass(frozen=True)
class Receipt:
    """The primary key of an inbound message's row."""

    platform: str
    chat_id: str
    message_id: str


@dataclass(frozen=True)
class LeftOver:
    """A message an earlier run of this instance recorded but never took; taken over by this run."""

    inbound: Inbound
    receipt: Receipt
    command: str | None
    lost_files: tuple[dict[str, Any], ...] = ()
    """The metadata of the files the message came with: their download links are not kept (Discord's
    expire and are signed), so the user is asked to send them again."""
    received_at: datetime | None = None
    """When it arrived, so a burst it was part of is joined again (bridges/bursts.py)."""


class Inbox:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        run_id: str,
        instance: str,
        now: Callable[[], datetime],
        outage_grace: float,
    ) -> None:
        self.db = db
        self.run_id = run_id
        self.instance = instance
        self._now = now
        self.outage_grace = outage_grace
        self._received = 0
        self._started: set[Receipt] = set()
        self._starting = [asyncio.Lock() for _ in range(64)]
        """A message's lock (by hash) is held while its turn reads it and while an edit replaces it."""
        self._recording = Batched(self._record, shared=(DatabaseUnavailable,))
        self._reading = Batched(self._queued_texts, shared=(DatabaseUnavailable,))

    async def receive(self, inbound: Inbound, arrival: int, command: str | None = None) -> Receipt | None:
        """Record the message with all it takes to answer it later; None if another process took it
        first, or a restart's recovery did. Every message arriving meanwhile is recorded in the same
        transaction (bridges/batches.py)."""
        receipt, row = self.row_of(inbound, arrival, command)
        return receipt if await self._recording(row) else None

    def row_of(
        self, inbound: Inbound, arrival: int, command: str | None = None
    ) -> tuple[Receipt, dict[str, Any]]:
        """The message's key and row, to record it now (`receive`) or with its turn (`record`). Presses
        and commands get a key of their own, since the platform delivers those to one process already."""
        local = command is not None or not inbound.message_id or inbound.button is not None
        receipt = Receipt(
            inbound.platform,
            inbound.chat_id,
            f"local:{uuid.uuid4().hex}" if local else inbound.message_id,
        )
        row = {
            **asdict(receipt),
            "taken_by": self.run_id,
            "received_at": self._now(),
            "arrival": arrival,
            "user_id": inbound.user_id,
            "display_name": inbound.display_name,
            "thread_id": inbound.thread_id,
            "guild_id": inbound.guild_id,
            "is_dm": inbound.is_dm,
            "text": inbound.text,
            "button": asdict(inbound.button) if inbound.button is not None else None,
            "attachments": [a.metadata() for a in inbound.attachments if a.kind != "sticker"] or None,
            "command": command,
        }
        return receipt, row

    @survives_db_outage
    async def _record(self, rows: Sequence[dict[str, Any]]) -> list[bool]:
        async with self.db.begin() as session:
            return await self.record(session, rows)

    async def record(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[bool]:
        """In the caller's transaction, insert the messages' rows (`row_of`; a duplicate is ignored);
        for each, whether it is this run's to answer. A retry after a lost acknowledgement finds its
        own row, so it is never mistaken for another process's."""
        await session.execute(
            insert_ignoring_duplicates(session, InboundMessage).on_conflict_do_nothing(), rows
        )
        mine = {
            Receipt(found.platform, found.chat_id, found.message_id)
            for found in await session.execute(
                select(InboundMessage.platform, InboundMessage.chat_id, InboundMessage.message_id)
                .where(_keys_in([_receipt_of(row) for row in rows]))
                .where(InboundMessage.taken_by == self.run_id, InboundMessage.handled_at.is_(None))
            )
        }
        self._received += len(rows)
        if self._received // PRUNE_EVERY != (self._received - len(rows)) // PRUNE_EVERY:
            cutoff = self._now() - KEPT
            await session.execute(delete(InboundMessage).where(InboundMessage.received_at < cutoff))
        return [_receipt_of(row) in mine for row in rows]

    @asynccontextmanager
    async def turn_of(self, inbound: Inbound, receipt: Receipt) -> AsyncIterator[Inbound]:
        """The message as its turn starts, with the text of the user's latest edit; edits made from here
        on no longer change what is answered (see `edit`)."""
        async with self._starting[hash(receipt) % len(self._starting)]:
            self._started.add(receipt)
            text = await self._reading(receipt)
        try:
            yield inbound if text is None or text == inbound.text else replace(inbound, text=text)
        finally:
            self._started.discard(receipt)

    @survives_db_outage
    async def _queued_texts(self, receipts: Sequence[Receipt]) -> list[str | None]:
        """The texts of messages not yet taken by a turn (None for one that was), read at once."""
        async with self.db() as session:
            found = {
                Receipt(row.platform, row.chat_id, row.message_id): row.text
                for row in await session.execute(
                    select(
                        InboundMessage.platform,
                        InboundMessage.chat_id,
                        InboundMessage.message_id,
                        InboundMessage.text,
                    )
                    .where(_keys_in(receipts))
                    .where(InboundMessage.handled_at.is_(None))
                )
            }
        return [found.get(receipt) for receipt in receipts]

    @survives_db_outage
    async def edit(self, receipt: Receipt, text: str) -> bool:
        """Replace the text of a message still waiting for its turn; False once its turn has started
        (in this process) or taken it."""
        async with self._starting[hash(receipt) % len(self._starting)]:
            if receipt in self._started:
                return False
            async with self.db.begin() as session:
                result = await session.execute(
                    update(InboundMessage)
                    .filter_by(**asdict(receipt))
                    .where(InboundMessage.handled_at.is_(None))
                    .values(text=text)
                    .execution_options(synchronize_session=False)
                )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def handled(self, *receipts: Receipt) -> Any:
        """The statement that marks messages taken by their turns; run it in the transaction that writes
        them to the transcript, so a crash can neither lose one nor answer it twice."""
        return (
            update(InboundMessage)
            .where(_keys_in(receipts))
            .values(handled_at=self._now(), text="", button=None, attachments=None)
            .execution_options(synchronize_session=False)
        )

    @survives_db_outage
    async def mark_handled(self, receipt: Receipt) -> None:
        async with self.db.begin() as session:
            await session.execute(self.handled(receipt))

    async def give_up(self, receipt: Receipt) -> None:
        """Mark a message whose turn failed (the user was told) as handled, so no restart answers it
        late; one attempt, since the database may be what failed."""
        try:
            async with self.db.begin() as session:
                await session.execute(self.handled(receipt))
        except Exception as exc:
            log.warning("could not mark message %s as handled: %s", receipt.message_id, type(exc).__name__)

    async def take_over_left_overs(self) -> list[LeftOver]:
        """This instance's messages that an earlier run recorded but never took, taken over by this run
        (each by a conditional UPDATE, so two starts never both take one), in arrival order."""
        async with self.db() as session:
            rows = list(
                await session.scalars(
                    select(InboundMessage).where(
                        InboundMessage.taken_by.startswith(f"{self.instance}:", autoescape=True),
                        InboundMessage.taken_by != self.run_id,
                        InboundMessage.handled_at.is_(None),
                    )
                )
            )
        rows.sort(key=_arrival_order(rows))
        taken = []
        for row in rows:
            receipt = Receipt(row.platform, row.chat_id, row.message_id)
            if await self._retake(receipt, row.taken_by):
                files = tuple(row.attachments or ())
                taken.append(LeftOver(_inbound_of(row), receipt, row.command, files, row.received_at))
        return taken

    @survives_db_outage
    async def _retake(self, receipt: Receipt, previous: str) -> bool:
        async with self.db.begin() as session:
            result = await session.execute(
                update(InboundMessage)
                .filter_by(**asdict(receipt))
                .where(InboundMessage.taken_by == previous, InboundMessage.handled_at.is_(None))
                .values(taken_by=f"{self.run_id}{RETAKEN}")
                .execution_options(synchronize_session=False)
            )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def _receipt_of(row: dict[str, Any]) -> Receipt:
    return Receipt(row["platform"], row["chat_id"], row["message_id"])


def _keys_in(receipts: Sequence[Receipt]) -> Any:
    """The rows of these messages, by their primary key."""
    return tuple_(InboundMessage.platform, InboundMessage.chat_id, InboundMessage.message_id).in_(
        [(r.platform, r.chat_id, r.message_id) for r in receipts]
    )


def _arrival_order(rows: Sequence[InboundMessage]) -> Callable[[InboundMessage], tuple[datetime, int]]:
    """Sort key: earlier runs first (a run by its first message), then each run's order of arrival,
    which is exact where the clock may tie or run ahead for a message that waited less."""
    run_started: dict[str, datetime] = {}
    for row in rows:
        run_started[row.taken_by] = min(row.received_at, run_started.get(row.taken_by, row.received_at))
    return lambda row: (run_started[row.taken_by], row.arrival)


def _inbound_of(row: InboundMessage) -> Inbound:
    return Inbound(
        platform=row.platform,
        chat_id=row.chat_id,
        user_id=row.user_id,
        display_name=row.display_name,
        text=row.text,
        message_id="" if row.message_id.startswith("local:") else row.message_id,
        thread_id=row.thread_id,
        guild_id=row.guild_id,
        is_dm=row.is_dm,
        button=Button(**row.button) if row.button is not None else None,
    )
