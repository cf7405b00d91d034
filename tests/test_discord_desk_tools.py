"""The Discord desk's slash commands end to end: the real discord.py client against the fake Discord
(which checks each command against what the bot registered, subcommands, user options and autocomplete
included), with the Relay and HandoffService on SQLite and PostgreSQL.

Alice asks for help in a DM; Maya and Sam have the moderator role, Mallory is a plain member."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from discord.utils import escape_markdown
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.cases import CaseNotices, DeskWords
from bridges.discord.desk_commands import CommandReplies
from bridges.handoff import HandoffService
from bridges.handoff_notices import UserNotices
from fakes.discord import FakeChannel, FakeDiscord, FakeMessage, FakeUser
from models import HandoffStatus
from tests.test_discord_desk import EPHEMERAL, App, World, fields, texts
from tests.test_discord_desk import world as world  # the fixture

pytestmark = pytest.mark.e2e


@pytest.fixture
async def app(world: World, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    app = App(world, db)
    yield app
    if hasattr(app, "bridge"):
        await app.bridge.close(grace=1.0)


async def started(app: App, **policy: object) -> App:
    """Start `app` with these [handoff] settings changed."""
    app.policy = replace(app.policy, **policy)  # type: ignore[arg-type]
    await app.start()
    return app


async def command(
    fake: FakeDiscord, channel: FakeChannel, user: FakeUser, *name: str, **options: object
) -> FakeMessage:
    """Run `/name...` and return its answer (public or private)."""
    return await fake.answer(await fake.slash(channel, user, *name, **options))  # type: ignore[arg-type]


async def private(
    fake: FakeDiscord, channel: FakeChannel, user: FakeUser, *name: str, **options: object
) -> str:
    answer = await command(fake, channel, user, *name, **options)
    assert answer.flags & EPHEMERAL, answer.content
    return answer.content


async def public(
    fake: FakeDiscord, channel: FakeChannel, user: FakeUser, *name: str, **options: object
) -> str:
    answer = await command(fake, channel, user, *name, **options)
    assert not answer.flags & EPHEMERAL, answer.content
    assert answer in fake.bot_messages(channel)
    return answer.content


async def dm_shows(fake: FakeDiscord, dm: FakeChannel, text: str) -> None:
    await fake.wait_until(lambda: texts(fake, dm)[-1:] == [text], what=f"{text!r} in the DM")


async def placed(handoffs: HandoffService, desk: str, key: str, value: str, within: float = 5.0) -> None:
    """Wait until a case's thread or topic leads back to it (stored just after the desk made it)."""
    deadline = asyncio.get_running_loop().time() + within
    while await handoffs.open_handoff_at(desk, key, value) is None:
        assert asyncio.get_running_loop().time() < deadline, "the thread was never stored"
        await asyncio.sleep(0.01)


async def claimed_case(app: App, by: FakeUser) -> tuple[FakeChannel, FakeMessage, FakeChannel, int]:
    dm, notification, thread = await app.ask_for_help()
    await placed(app.handoffs, "discord", "thread", str(thread.id))
    assert (await app.press(notification, "claim", by)).content.startswith("You claimed")
    return dm, notification, thread, (await app.handoff()).id


async def test_notes_replies_and_snippets_from_a_case_thread(world: World, app: App) -> None:
    fake, maya = world.fake, world.maya
    await started(app)
    dm, _, thread, case = await claimed_case(app, maya)

    note = await public(fake, thread, maya, "note", text="VIP, refunded once already")
    assert note == DeskWords.note_shown.format(name="maya", text="VIP, refunded once already")
    assert await app.internal_notes() == ["VIP, refunded once already"]

    assert await public(fake, thread, maya, "reply", text="Hello Alice") == CommandReplies.replied.format(
        name="maya", text="Hello Alice"
    )
    await dm_shows(fake, dm, "maya (moderator): Hello Alice")
    sent = await public(fake, thread, maya, "areply", text="We are on it")
    assert sent == CommandReplies.replied_as.format(name="maya", staff="Staff", text="We are on it")
    await dm_shows(fake, dm, "Staff: We are on it")

    saved = await private(fake, thread, maya, "snippet", "add", name="refund", text="Refunds take 5 days.")
    assert saved == DeskWords.snippet_saved.format(name="refund")
    await private(fake, world.mods, maya, "snippet", "add", name="receipt", text="Please send the receipt.")
    assert await fake.autocomplete(thread, maya, "snippet", "send", focused="name", name="re") == [
        {"name": "receipt: Please send the receipt.", "value": "receipt"},
        {"name": "refund: Refunds take 5 days.", "value": "refund"},
    ]
    assert await fake.autocomplete(thread, maya, "asnippet", focused="name", name="ref") == [
        {"name": "refund: Refunds take 5 days.", "value": "refund"}
    ]
    await public(fake, thread, maya, "snippet", "send", name="refund")
    await dm_shows(fake, dm, "maya (moderator): Refunds take 5 days.")
    await public(fake, thread, maya, "asnippet", name="receipt")
    await dm_shows(fake, dm, "Staff: Please send the receipt.")

    edited = await private(fake, thread, maya, "snippet", "edit", name="refund", text="Refunds take a week.")
    assert edited == DeskWords.snippet_saved.format(name="refund")
    listed = await private(fake, thread, maya, "snippet", "list")
    assert listed.splitlines() == ["• receipt: Please send the receipt.", "• refund: Refunds take a week."]
    removed = await private(fake, thread, maya, "snippet", "remove", name="receipt")
    assert removed == DeskWords.snippet_removed.format(name="receipt")
    missing = await public(fake, thread, maya, "snippet", "send", name="receipt")
    assert missing == DeskWords.snippet_missing.format(name="receipt")
    assert await app.internal_notes() == ["VIP, refunded once already"]
    assert (await app.handoff()).id == case


async def test_transfer_unclaim_and_a_scheduled_close(world: World, app: App) -> None:
    fake, maya, sam = world.fake, world.maya, world.sam
    await started(app)
    dm, notification, thread, case = await claimed_case(app, maya)

    refused = await private(fake, thread, maya, "transfer", member=world.mallory)
    assert refused == DeskWords.not_a_moderator.format(name="mallory")
    moved = await private(fake, thread, maya, "transfer", member=sam)
    assert moved == DeskWords.transferred.format(id=case, name="sam")
    await dm_shows(fake, dm, CaseNotices.transferred_to.format(name="sam"))
    await fake.wait_until(lambda: fields(notification)["Status"] == "Claimed by sam", what="the card")
    assert await public(fake, thread, maya, "reply", text="still me") == DeskWords.held_by_other.format(
        name="sam"
    )

    assert await private(fake, thread, maya, "unclaim") == DeskWords.not_holder
    assert await private(fake, thread, sam, "unclaim") == DeskWords.unclaimed.format(id=case)
    assert (await app.handoff()).status is HandoffStatus.REQUESTED
    assert (await app.press(notification, "claim", sam)).content.startswith("You claimed")

    bad = await private(fake, thread, sam, "close", **{"in": "soon"})
    assert bad == DeskWords.bad_duration.format(word="soon")
    later = await private(fake, thread, sam, "close", **{"in": "30m"}, reason="in case the receipt comes")
    assert later == DeskWords.close_scheduled.format(id=case, delay="30 minutes")
    app.clock.now += timedelta(minutes=31)
    await app.handoffs.tick()
    await dm_shows(fake, dm, UserNotices.resolved)
    closed = await app.handoff()
    assert closed.status is HandoffStatus.RESOLVED and closed.close_reason == "in case the receipt comes"
    assert closed.closed_by_name == "sam"
    assert await private(fake, thread, sam, "close") == DeskWords.not_in_case  # its thread is no case now


async def test_history_search_and_earlier_cases_on_the_notification(world: World, app: App) -> None:
    fake, maya = world.fake, world.maya
    await started(app)
    dm, first_card, thread, first = await claimed_case(app, maya)
    assert await private(fake, thread, maya, "history") == DeskWords.history_none.format(user="alice")
    await private(fake, thread, maya, "close", reason="double charge refunded")
    day = (await app.handoff()).requested_at

    await fake.user_says(dm, world.alice, "help")
    second_card = await fake.wait_until(
        lambda: next((m for m in fake.bot_messages(world.mods) if m.embeds and m is not first_card), None),
        what="the second notification",
    )
    thread2 = await app.thread(second_card)
    await placed(app.handoffs, "discord", "thread", str(thread2.id))
    link = f"https://discord.com/channels/{world.guild.id}/{thread.id}"
    line = f"#{first} {day:%Y-%m-%d}: resolved by maya: double charge refunded {link}"
    shown = escape_markdown(line)  # Discord renders it as `line`
    assert fields(second_card)["Earlier cases: 1"] == shown
    history = await private(fake, thread2, maya, "history")
    assert history.splitlines() == [DeskWords.history_head.format(user="alice", count=1), shown]

    found = await private(fake, world.mods, maya, "search", words="HELP")
    assert found.splitlines()[0] == DeskWords.found_head
    assert [row.split()[0] for row in found.splitlines()[1:]] == [f"\\#{first + 1}", f"\\#{first}"]
    by_user = await private(
        fake,
        world.mods,
        maya,
        "search",
        platform="discord",
        user_id=str(world.alice.id),
        words="nothing like it",
    )
    assert by_user == DeskWords.found_none
    assert await private(fake, world.mods, maya, "search") == DeskWords.search_usage


async def test_everyone_else_and_everywhere_else_is_refused_privately(world: World, app: App) -> None:
    fake, maya, mallory = world.fake, world.maya, world.mallory
    await started(app)
    dm, _, thread, _ = await claimed_case(app, maya)
    await private(fake, thread, maya, "snippet", "add", name="refund", text="Refunds take 5 days.")

    for name, options in [
        (("note",), {"text": "hi"}),
        (("reply",), {"text": "hi"}),
        (("snippet", "send"), {"name": "refund"}),
        (("snippet", "add"), {"name": "mine", "text": "x"}),
        (("transfer",), {"member": mallory}),
        (("close",), {}),
        (("search",), {"words": "help"}),
    ]:
        assert await private(fake, thread, mallory, *name, **options) == DeskWords.not_moderator
    assert await fake.autocomplete(thread, mallory, "snippet", "send", focused="name", name="") == []
    assert await private(fake, world.general, maya, "note", text="hi") == DeskWords.not_in_case
    assert await private(fake, world.mods, maya, "history") == DeskWords.not_in_case
    assert texts(fake, dm)[-1] == UserNotices.claimed.format(name="maya")  # nothing reached Alice
    assert await app.internal_notes() == []


async def test_plain_messages_as_notes_and_anonymous_replies_by_default(world: World, app: App) -> None:
    fake, maya, sam = world.fake, world.maya, world.sam
    await started(app, plain_messages="note", anonymous_replies=True, staff_name="Support team")
    dm, _, thread, _ = await claimed_case(app, maya)

    await fake.user_says(thread, maya, "she paid twice, checking")
    await fake.user_says(thread, sam, "I saw that too")
    sent = await public(fake, thread, maya, "reply", text="Found it, refunding now")
    assert sent == CommandReplies.replied.format(name="maya", text="Found it, refunding now")
    await dm_shows(fake, dm, "maya (moderator): Found it, refunding now")
    await private(fake, thread, maya, "snippet", "add", name="bye", text="Anything else?")
    await public(fake, thread, maya, "snippet", "send", name="bye")
    await dm_shows(fake, dm, "Support team: Anything else?")  # a snippet follows the desk's default
    assert await app.internal_notes() == ["she paid twice, checking", "I saw that too"]
    assert [m.content for m in fake.bot_messages(thread) if m.reference] == []  # no answer to a note


async def test_a_user_who_leaves_the_server_has_their_case_closed(world: World, app: App) -> None:
    fake = world.fake
    app.members_intent = True
    await started(app)
    dm, notification, _, _ = await claimed_case(app, world.maya)
    await fake.member_leaves(world.guild, world.alice)
    await fake.wait_until(lambda: fields(notification)["Status"].startswith("Resolved"), what="the close")
    closed = await app.handoff()
    assert closed.status is HandoffStatus.RESOLVED
    assert closed.close_reason == CaseNotices.left_reason.format(why="left the server")
    assert UserNotices.resolved not in texts(fake, dm)  # nobody to tell
