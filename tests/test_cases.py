"""The desk's everyday tools (bridges/cases.py) on SQLite and PostgreSQL: notes, anonymous replies,
snippets, transfer, scheduled and silent closes, history, search, and two moderators at once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.cases import CaseNotices, CloseTerms, DeskWords, close_terms
from bridges.handoff import HandoffService
from bridges.handoff_notices import UserNotices
from models import Handoff, HandoffStatus, TranscriptEntry
from tests.surfaces import RecordingSurface
from tests.test_handoff_service import RecordingDesk, World
from tests.test_relay import Clock, inbound


async def claimed_case(world: World, moderator: str = "discord:7", name: str = "Maya") -> int:
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    assert (await world.handoffs.claim(handoff_id, moderator, name)).won
    return handoff_id


def with_policy(world: World, **changes: object) -> None:
    world.handoffs.policy = replace(world.handoffs.policy, **changes)  # type: ignore[arg-type]


async def test_a_note_stays_with_moderators_marked_internal_and_reaches_the_other_desk(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    other = RecordingDesk(name="other")
    world.handoffs.desks.append(other)
    handoff_id = await claimed_case(world)
    other.opened.append(await world.handoffs.view(handoff_id))
    async with db.begin() as session:  # as if the other desk had opened it too
        handoff = await session.get_one(Handoff, handoff_id)
        handoff.notification_refs = {**handoff.notification_refs, "other": {"thread": "o1"}}
    shown = len(world.user.visible_texts())
    cases = world.handoffs.cases
    assert await cases.note(handoff_id, "discord:7", "Maya", "VIP, be gentle", from_desk="desk")
    assert len(world.user.visible_texts()) == shown  # the user saw nothing
    assert other.notes[-1] == ("o1", "📝 note by Maya: VIP, be gentle")
    assert all("VIP" not in text for _, text in world.desk.notes)  # not echoed where it was written
    assert ("moderator", "VIP, be gentle") not in (await world.handoffs.view(handoff_id)).recent
    assert "moderator discord:7 (internal note): VIP, be gentle" in await world.handoffs.transcript(
        handoff_id
    )
    await world.handoffs.close(handoff_id, HandoffStatus.RESOLVED, "discord:7", "Maya")
    assert not await cases.note(handoff_id, "discord:7", "Maya", "too late", from_desk="desk")


async def test_plain_messages_as_notes_and_other_moderators_words_are_notes_without_an_answer(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    handoff_id = await claimed_case(world)
    cases = world.handoffs.cases
    shown = len(world.user.visible_texts())
    # someone else writes while Maya holds it: a note, and no answer
    assert await cases.plain_message(handoff_id, "discord:8", "Sam", "I know them", from_desk="desk") is None
    assert len(world.user.visible_texts()) == shown
    # the holder's plain words reach the user by default ...
    assert await cases.plain_message(handoff_id, "discord:7", "Maya", "Hello!", from_desk="desk") is None
    assert world.user.visible_texts()[-1] == "Maya (moderator): Hello!"
    # ... and are notes when the desk says so; /reply sends
    with_policy(world, plain_messages="note")
    assert await cases.plain_message(handoff_id, "discord:7", "Maya", "thinking", from_desk="desk") is None
    assert world.user.visible_texts()[-1] == "Maya (moderator): Hello!"
    assert await cases.reply(handoff_id, "discord:7", "Maya", "Found it.") is None
    assert world.user.visible_texts()[-1] == "Maya (moderator): Found it."
    assert await cases.reply(handoff_id, "discord:8", "Sam", "me too") == DeskWords.held_by_other.format(
        name="Maya"
    )
    transcript = await world.handoffs.transcript(handoff_id)
    assert "moderator discord:8 (internal note): I know them" in transcript
    assert "moderator discord:7 (internal note): thinking" in transcript


async def test_with_nobody_holding_the_case_a_plain_message_asks_to_claim_first(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    answer = await world.handoffs.cases.plain_message(handoff_id, "discord:7", "Maya", "hi", from_desk="desk")
    assert answer == DeskWords.claim_first


async def test_anonymous_replies_show_the_staff_name_and_the_transcript_keeps_the_author(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    with_policy(world, staff_name="Support team")
    handoff_id = await claimed_case(world)
    assert (
        await world.handoffs.cases.reply(handoff_id, "discord:7", "Maya", "We are on it.", anonymous=True)
        is None
    )
    assert world.user.visible_texts()[-1] == "Support team: We are on it."
    with_policy(world, anonymous_replies=True)
    assert await world.handoffs.cases.reply(handoff_id, "discord:7", "Maya", "Done.") is None
    assert world.user.visible_texts()[-1] == "Support team: Done."
    assert (
        await world.handoffs.cases.reply(handoff_id, "discord:7", "Maya", "Named.", anonymous=False) is None
    )
    assert world.user.visible_texts()[-1] == "Maya (moderator): Named."
    assert "moderator discord:7: We are on it." in await world.handoffs.transcript(handoff_id)


async def test_snippets_are_added_edited_listed_sent_and_removed(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    cases = world.handoffs.cases
    assert await cases.save_snippet("Refund", "Refunds take 5 days.", "discord:7", new=True) == (
        DeskWords.snippet_saved.format(name="refund")
    )
    assert await cases.save_snippet("refund", "again", "telegram:9", new=True) == (
        DeskWords.snippet_exists.format(name="refund")
    )
    assert await cases.save_snippet("bad name", "x", "discord:7", new=True) == DeskWords.snippet_usage
    assert await cases.save_snippet("hours", "x", "discord:7", new=False) == (
        DeskWords.snippet_missing.format(name="hours")
    )
    await cases.save_snippet("refund", "Refunds take 3 days.", "telegram:9", new=False)
    await cases.save_snippet("hours", "9 to 5.", "telegram:9", new=True)
    assert await cases.snippets("re") == [("refund", "Refunds take 3 days.")]
    assert await cases.snippets("%") == []  # a LIKE wildcard is a letter here
    assert await cases.snippet_list() == "• hours: 9 to 5.\n• refund: Refunds take 3 days."
    assert await cases.snippet_command(["refund"], "telegram:9") == ("Refunds take 3 days.", "")
    assert await cases.snippet_command(["remove", "hours"], "telegram:9") == (
        None,
        DeskWords.snippet_removed.format(name="hours"),
    )
    assert await cases.snippet("hours") is None
    assert [summary for summary, _ in world.desk.logs] == []  # audits go to the desk's audit log


async def test_unclaim_and_transfer_move_the_case_and_tell_the_user_only_when_named(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    handoff_id = await claimed_case(world)
    cases = world.handoffs.cases
    assert await cases.unclaim(handoff_id, "discord:8", "Sam") == DeskWords.not_holder
    assert await cases.unclaim(handoff_id, "discord:7", "Maya") == DeskWords.unclaimed.format(id=handoff_id)
    view = world.desk.updates[-1]
    assert (view.status, view.claimed_by_name) == (HandoffStatus.REQUESTED, None)
    assert (await world.handoffs.claim(handoff_id, "telegram:5", "Tom")).won
    answer = await cases.transfer(handoff_id, "telegram:5", "Tom", "discord:8", "Sam")
    assert answer == DeskWords.transferred.format(id=handoff_id, name="Sam")
    assert world.user.visible_texts()[-1] == CaseNotices.transferred_to.format(name="Sam")
    assert world.desk.updates[-1].claimed_by_name == "Sam"
    assert "transferred from Tom to Sam by Tom" in world.desk.logs[-1][0]
    assert not await world.handoffs.moderator_says(handoff_id, "telegram:5", "Tom", "still me?")
    assert await world.handoffs.moderator_says(handoff_id, "discord:8", "Sam", "Sam here.")
    with_policy(world, anonymous_replies=True)
    shown = len(world.user.visible_texts())
    await cases.transfer(handoff_id, "discord:8", "Sam", "discord:7", "Maya")
    assert len(world.user.visible_texts()) == shown  # anonymous desk: the user is not told who


async def test_a_transfer_and_a_claim_at_once_have_one_winner(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    other = HandoffService(db, world.handoffs.policy, now=world.clock)  # another process
    claim, transfer = await asyncio.gather(
        world.handoffs.claim(handoff_id, "discord:7", "Maya"),
        other.cases.transfer(handoff_id, "telegram:5", "Tom", "discord:8", "Sam"),
    )
    transferred = transfer == DeskWords.transferred.format(id=handoff_id, name="Sam")
    assert claim.won != transferred
    async with db() as session:
        handoff = await session.get_one(Handoff, handoff_id)
    assert handoff.claimed_by_name == ("Maya" if claim.won else "Sam")
    if not transferred:
        assert transfer == DeskWords.transfer_lost.format(name="Maya")


async def test_a_close_and_a_reply_at_once_never_leave_a_reply_after_the_close(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    handoff_id = await claimed_case(world)
    other = HandoffService(db, world.handoffs.policy, now=world.clock)
    replied, closed = await asyncio.gather(
        world.handoffs.moderator_says(handoff_id, "discord:7", "Maya", "one more thing"),
        other.close(handoff_id, HandoffStatus.RESOLVED, "discord:8", "Sam"),
    )
    assert closed
    async with db() as session:
        entries = list(await session.scalars(select(TranscriptEntry).order_by(TranscriptEntry.id)))
    texts = [entry.text for entry in entries]
    closed_at = next(i for i, text in enumerate(texts) if text.startswith("handoff resolved"))
    if replied:
        assert texts.index("one more thing") < closed_at
    else:
        assert "one more thing" not in texts


async def test_close_now_with_a_reason_and_the_configured_closing_message(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    with_policy(world, require_close_reason=True, closing_message="Thanks for writing to us!")
    handoff_id = await claimed_case(world)
    cases = world.handoffs.cases
    assert await cases.close(handoff_id, "discord:7", "Maya", "") == DeskWords.reason_needed
    assert await cases.close(handoff_id, "discord:7", "Maya", "in soon") == DeskWords.bad_duration.format(
        word="soon"
    )
    assert await cases.close(handoff_id, "discord:7", "Maya", "refund sent") == DeskWords.closed.format(
        id=handoff_id
    )
    assert world.user.visible_texts()[-1] == "Thanks for writing to us!"
    assert world.desk.logs[-1][0].endswith(": refund sent")
    assert await cases.close(handoff_id, "discord:7", "Maya", "again") == DeskWords.closed_already


def test_close_terms_read_a_delay_and_a_reason() -> None:
    assert close_terms("in 30m waiting for a receipt") == CloseTerms(
        timedelta(minutes=30), "waiting for a receipt"
    )
    assert close_terms("done") == CloseTerms(None, "done")
    assert close_terms("") == CloseTerms(None, "")


async def test_a_scheduled_close_is_cancelled_by_the_user_and_survives_a_restart(
    db: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    world = World(db, clock)
    handoff_id = await claimed_case(world)
    cases = world.handoffs.cases
    answer = await cases.close(handoff_id, "discord:7", "Maya", "in 30m no answer")
    assert answer == DeskWords.close_scheduled.format(id=handoff_id, delay="30 minutes")
    assert world.desk.notes[-1] == (f"t{handoff_id}", answer)
    await world.relay.handle(inbound("wait, one more question"), RecordingSurface())
    assert world.desk.notes[-1] == (f"t{handoff_id}", CaseNotices.close_cancelled.format(id=handoff_id))
    clock.now += timedelta(minutes=31)
    await world.handoffs.tick()
    assert (await world.handoffs.view(handoff_id)).status is HandoffStatus.CLAIMED
    await cases.close(handoff_id, "discord:7", "Maya", "in 10m all done")
    world.restart()  # timers are read from the database
    clock.now += timedelta(minutes=9)
    await world.handoffs.tick()
    assert (await world.handoffs.view(handoff_id)).status is HandoffStatus.CLAIMED
    clock.now += timedelta(minutes=2)
    await world.handoffs.tick()
    view = await world.handoffs.view(handoff_id)
    assert (view.status, view.closed_by) == (HandoffStatus.RESOLVED, "Maya")
    assert world.desk.logs[-1][0].endswith(": all done")
    assert world.user.visible_texts()[-1] == UserNotices.resolved


async def test_a_silent_claimed_case_is_warned_then_closed_and_any_word_resets_it(
    db: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    world = World(db, clock)
    with_policy(world, auto_close=timedelta(minutes=60), auto_close_warning=timedelta(minutes=10))
    handoff_id = await claimed_case(world)
    clock.now += timedelta(minutes=49)
    await world.handoffs.tick()
    assert world.desk.notes == []
    clock.now += timedelta(minutes=2)
    await world.handoffs.tick()
    await world.handoffs.tick()  # warned once
    warning = CaseNotices.silence_warning_user.format(minutes=10)
    assert world.user.visible_texts().count(warning) == 1
    assert world.desk.notes[-1][1] == CaseNotices.silence_warning_desk.format(id=handoff_id, minutes=10)
    await world.relay.handle(inbound("still here"), RecordingSurface())  # the user answers: count again
    clock.now += timedelta(minutes=49)
    await world.handoffs.tick()
    assert (await world.handoffs.view(handoff_id)).status is HandoffStatus.CLAIMED
    assert world.user.visible_texts().count(warning) == 1
    clock.now += timedelta(minutes=2)
    await world.handoffs.tick()
    assert world.user.visible_texts().count(warning) == 2
    world.restart()
    with_policy(world, auto_close=timedelta(minutes=60), auto_close_warning=timedelta(minutes=10))
    clock.now += timedelta(minutes=10)
    await world.handoffs.tick()
    view = await world.handoffs.view(handoff_id)
    assert (view.status, view.closed_by) == (HandoffStatus.RESOLVED, "auto-close")
    assert "no message from either side for 60 minutes" in world.desk.logs[-1][0]


async def test_history_and_search_find_earlier_cases(db: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    world = World(db, clock)
    first = await claimed_case(world)
    await world.relay.handle(inbound("my parcel 123 is lost"), RecordingSurface())
    await world.handoffs.cases.close(first, "discord:7", "Maya", "found the parcel")
    clock.now += timedelta(hours=2)
    second = await claimed_case(world, "discord:8", "Sam")
    view = await world.handoffs.view(second)
    assert view.earlier_cases == 1
    (past,) = view.history
    assert (past.handoff_id, past.status, past.closed_by, past.reason) == (
        first,
        HandoffStatus.RESOLVED,
        "Maya",
        "found the parcel",
    )
    assert past.outcome() == "resolved by Maya: found the parcel"
    assert past.refs == {"desk": {"thread": f"t{first}"}}
    found = await world.handoffs.cases.search("PARCEL 123")
    assert [case.handoff_id for case in found] == [first]
    assert [c.handoff_id for c in await world.handoffs.cases.search("", "console", "u1")] == [second, first]
    assert await world.handoffs.cases.search("parcel", "console", "someone else") == []
    assert await world.handoffs.cases.search("100%") == []


async def test_a_user_who_leaves_has_their_case_closed_without_a_message(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    await claimed_case(world)
    shown = len(world.user.visible_texts())
    assert await world.handoffs.cases.user_gone("console", "u1", "left the server")
    assert len(world.user.visible_texts()) == shown
    assert "the user left the server" in world.desk.logs[-1][0]
    assert not await world.handoffs.cases.user_gone("console", "u1", "left the server")


async def test_first_response_and_time_to_close_are_measured_once(
    db: async_sessionmaker[AsyncSession],
) -> None:
    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    clock = Clock()
    world = World(db, clock)
    first_before = count("switchboard_case_first_response_seconds_count")
    close_before = count("switchboard_case_time_to_close_seconds_count", outcome="resolved")
    handoff_id = await claimed_case(world)
    clock.now += timedelta(minutes=4)
    await world.handoffs.moderator_says(handoff_id, "discord:7", "Maya", "hi")
    await world.handoffs.moderator_says(handoff_id, "discord:7", "Maya", "again")
    clock.now += timedelta(minutes=6)
    await world.handoffs.close(handoff_id, HandoffStatus.RESOLVED, "discord:7", "Maya")
    assert count("switchboard_case_first_response_seconds_count") == first_before + 1
    assert count("switchboard_case_time_to_close_seconds_count", outcome="resolved") == close_before + 1
    async with db() as session:
        handoff = await session.get_one(Handoff, handoff_id)
    assert handoff.first_response_at is not None
    assert handoff.first_response_at - handoff.requested_at == timedelta(minutes=4)


async def test_a_timer_close_whose_reason_is_gone_changes_nothing(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """The tick reads what is due, then closes; a user who writes in between cancels the scheduled close,
    and the close that follows must then find nothing to do."""
    clock = Clock()
    world = World(db, clock)
    handoff_id = await claimed_case(world)
    await world.handoffs.cases.close(handoff_id, "discord:7", "Maya", "in 30m no answer")
    await world.relay.handle(inbound("wait, one more question"), RecordingSurface())  # cancels it
    clock.now += timedelta(minutes=31)
    closed = await world.handoffs.close(
        handoff_id, HandoffStatus.RESOLVED, "discord:7", "Maya", only_if=Handoff.close_at <= clock.now
    )
    assert not closed
    assert (await world.handoffs.view(handoff_id)).status is HandoffStatus.CLAIMED
