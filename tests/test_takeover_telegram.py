"""`/takeover` and `/contact` on the Telegram desk, end to end: python-telegram-bot against the fake Bot
API (which refuses, as Telegram does, to let a bot write first to a user who never started it (403), to
one who blocked it (403) and to an id it does not know (400), and sends forwards with their origin),
with the Relay and the handoff service on SQLite and PostgreSQL.

Maya (an admin) and Sam (a member) moderate in the forum "Moderators"; Uma talks to the bot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import TextDelta
from bridges.cases import DeskWords
from bridges.controls import ControlNotices
from bridges.handoff_notices import UserNotices
from bridges.render import IN_PROGRESS
from bridges.takeover import TakeoverNotices, TakeoverWords
from bridges.telegram.access import AccessReplies
from bridges.telegram.takeover_commands import TakeoverReplies
from fakes.telegram import FakeChat, FakeMessage, FakeTelegram, FakeUser
from models import Handoff, HandoffStatus, Role, TranscriptEntry
from tests.test_telegram_desk import QUICK, ROOMY, Desk, desk_running

STOPPED = f"Once upon a time {ControlNotices.stopped_mark}"
"""What the user keeps of a reply a takeover stopped: the text so far, marked stopped."""

pytestmark = pytest.mark.e2e


@pytest.fixture
async def desk(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Desk]:
    async with desk_running(db) as running_desk:
        yield running_desk


async def command(desk: Desk, by: FakeUser, text: str, *, reply_to: FakeMessage | None = None) -> str:
    """Send a command in the moderators' chat and return the bot's answer to it."""
    sent = desk.fake.say(desk.mods, by, text, reply_to=reply_to)

    def answer() -> FakeMessage | None:
        return next((m for m in desk.fake.bot_messages(desk.mods) if m.reply_to is sent), None)

    await desk.fake.wait_for(lambda: answer() is not None, what=f"an answer to {text!r}")
    found = answer()
    assert found is not None
    return found.text


async def cases(desk: Desk) -> list[Handoff]:
    async with desk.telegram.db() as session:
        return list(await session.scalars(select(Handoff).order_by(Handoff.id)))


async def said_by(desk: Desk, role: Role) -> list[str]:
    async with desk.telegram.db() as session:
        found = await session.scalars(
            select(TranscriptEntry.text).where(TranscriptEntry.role == role).order_by(TranscriptEntry.id)
        )
        return list(found)


def texts(desk: Desk, chat: FakeChat) -> list[str]:
    return [m.text for m in desk.fake.bot_messages(chat)]


async def test_takeover_mid_stream_by_id_stops_the_reply_and_opens_a_claimed_case(desk: Desk) -> None:
    fake, maya = desk.fake, desk.maya
    uma = fake.user("Uma")
    chat = fake.private_chat(uma)
    story = desk.telegram.agent.feed("tell me a story")
    story.put_nowait(TextDelta("Once upon a time"))  # and nothing more: the provider takes its time
    fake.say(chat, uma, "tell me a story")
    await fake.wait_for(
        lambda: any(f"Once upon a time {IN_PROGRESS}" in d.history for d in fake.drafts_in(chat)),
        what="the reply streaming",
    )

    answer = await command(desk, maya, f"/takeover {uma.id}")
    (case,) = await cases(desk)
    assert answer == TakeoverWords.taken.format(user="Uma", id=case.id)
    await fake.wait_for(lambda: texts(desk, chat) == [STOPPED, UserNotices.claimed.format(name="Maya")])
    assert case.status is HandoffStatus.CLAIMED and case.requested_by == "takeover"
    assert case.claimed_by == f"telegram:{maya.id}"
    assert await said_by(desk, Role.AGENT) == [STOPPED]
    note = await desk.notification(case.id)
    assert "Reason: taken over by Maya" in note.text and "claimed by Maya" in note.text
    assert "@maya_mod" not in note.text  # nobody is pinged for a case already taken
    audit = f"took over the conversation of Uma (telegram user {uma.id}) (case #{case.id})"
    await fake.wait_for(lambda: any(audit in m.text for m in fake.bot_messages(desk.log)), what="the audit")

    fake.say(chat, uma, "hello?")
    await desk.in_chat(desk.mods, "💬 Uma: hello?", note.thread_id)
    fake.say(desk.mods, maya, "Hi Uma, Maya here.", thread_id=note.thread_id)
    await desk.in_chat(chat, "Maya (moderator): Hi Uma, Maya here.")
    # in the case's topic, /takeover alone means its user, who is already taken
    assert await command_in_topic(desk, desk.sam, "/takeover", note) == TakeoverWords.held_by.format(
        name="Maya", user="Uma", id=case.id
    )


async def command_in_topic(desk: Desk, by: FakeUser, text: str, note: FakeMessage) -> str:
    sent = desk.fake.say(desk.mods, by, text, thread_id=note.thread_id)
    await desk.fake.wait_for(
        lambda: any(m.reply_to is sent for m in desk.fake.bot_messages(desk.mods, note.thread_id)),
        what="the answer in the topic",
    )
    return next(m.text for m in desk.fake.bot_messages(desk.mods, note.thread_id) if m.reply_to is sent)


async def test_contact_says_why_telegram_will_not_deliver_and_opens_nothing(desk: Desk) -> None:
    fake, maya = desk.fake, desk.maya
    nia = fake.user("Nia")  # Telegram knows her, but she never started the bot
    bo = fake.user("Bo")
    fake.private_chat(bo)
    fake.block_bot(bo)

    never_started = TakeoverReplies.not_started.format(user=f"telegram user {nia.id}")
    assert await command(desk, maya, f"/contact {nia.id}") == never_started
    blocked = TakeoverReplies.blocked.format(user=f"telegram user {bo.id}")
    assert await command(desk, maya, f"/contact {bo.id}") == blocked
    assert await command(desk, maya, "/contact 424242") == TakeoverReplies.unknown.format(
        user="telegram user 424242"
    )
    assert await command(desk, maya, "/contact @nia") == TakeoverReplies.no_usernames
    hidden = fake.say(desk.mods, maya, "forwarded words", forwarded_from="Secret Sam")
    assert await command(desk, maya, "/contact", reply_to=hidden) == TakeoverReplies.hidden.format(
        name="Secret Sam"
    )
    assert await command(desk, maya, "/contact") == TakeoverReplies.contact_usage
    assert await cases(desk) == []


async def test_contact_from_a_forward_opens_a_claimed_case_the_user_answers(desk: Desk) -> None:
    fake, maya = desk.fake, desk.maya
    uma = fake.user("Uma")
    chat = fake.private_chat(uma)  # she started the bot once
    forward = fake.say(desk.mods, maya, "my order never came", forwarded_from=uma)

    answer = await command(desk, maya, "/contact", reply_to=forward)
    (case,) = await cases(desk)
    assert answer == TakeoverWords.contacted.format(user="Uma", id=case.id)
    assert texts(desk, chat) == [TakeoverNotices.intro.format(name="Maya")]
    assert case.status is HandoffStatus.CLAIMED and case.requested_by == "contact"
    note = await desk.notification(case.id)
    assert "Reason: Maya opened a conversation with the user" in note.text
    audit = f"contacted Uma (telegram user {uma.id}) (case #{case.id})"
    await fake.wait_for(lambda: any(audit in m.text for m in fake.bot_messages(desk.log)), what="the audit")

    fake.say(chat, uma, "oh hi, yes it never came")
    await desk.in_chat(desk.mods, "💬 Uma: oh hi, yes it never came", note.thread_id)
    assert desk.telegram.agent.turns == []
    assert await command(desk, maya, f"/takeover {uma.id}") == TakeoverWords.yours_already.format(
        user="Uma", id=case.id
    )


async def test_contact_greets_the_user_in_the_language_of_their_last_conversation(desk: Desk) -> None:
    fake, maya = desk.fake, desk.maya
    jonas = fake.user("Jonas", language_code="de")
    chat = fake.private_chat(jonas)
    fake.say(chat, jonas, "hallo")
    await desk.in_chat(chat, "scripted: hallo (#1)")
    fake.say(chat, jonas, "/reset")  # his conversation ends; its language is remembered
    await fake.wait_for(lambda: len(texts(desk, chat)) == 2, what="the reset")

    await command(desk, maya, f"/contact {jonas.id}")
    german = desk.telegram.relay.catalogue.words("de")(TakeoverNotices).intro.format(name="Maya")
    assert german != TakeoverNotices.intro.format(name="Maya")
    await fake.wait_for(lambda: texts(desk, chat)[-1:] == [german], what="the intro in German")


async def test_a_user_outside_the_allow_lists_answers_a_moderator_who_wrote_first(
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake = FakeTelegram(limits=ROOMY)
    ina, uma = fake.user("Ina"), fake.user("Uma")
    chat = fake.private_chat(uma)  # she started the bot once, but she is not on the list
    async with desk_running(db, fake=fake, budgets={**QUICK, "allowed_users": (ina.id,)}) as desk:
        fake.say(chat, uma, "hello?")
        await desk.in_chat(chat, AccessReplies.not_available)
        await command(desk, desk.maya, f"/contact {uma.id}")
        (case,) = await cases(desk)
        note = await desk.notification(case.id)
        fake.say(chat, uma, "thanks for writing")
        await desk.in_chat(desk.mods, "💬 Uma: thanks for writing", note.thread_id)


async def test_only_desk_moderators_in_the_desk(desk: Desk) -> None:
    fake, maya = desk.fake, desk.maya
    uma = fake.user("Uma")
    chat = fake.private_chat(uma)
    fake.say(chat, uma, "hello")
    await desk.in_chat(chat, "scripted: hello (#1)")

    eve = fake.user("Eve")  # not in the moderators' chat
    assert await command(desk, eve, f"/takeover {uma.id}") == DeskWords.not_moderator
    mine = fake.private_chat(maya)
    fake.say(mine, maya, f"/takeover {uma.id}")
    await desk.in_chat(mine, TakeoverReplies.desk_only)
    fake.say(mine, maya, f"/contact {uma.id}")
    await fake.wait_for(lambda: texts(desk, mine) == [TakeoverReplies.desk_only] * 2, what="both refused")
    nobody = TakeoverWords.no_conversation.format(user=f"telegram user {eve.id}")
    assert await command(desk, maya, f"/takeover {eve.id}") == nobody
    assert await command(desk, maya, "/takeover") == TakeoverReplies.takeover_usage
    assert await cases(desk) == []
    assert texts(desk, chat) == ["scripted: hello (#1)"]
