"""`/takeover`, the "Take over conversation" message menu and `/contact` on the Discord desk, end to end:
the real discord.py client against the fake Discord (which checks commands against what the bot
registered, message menus included, and refuses a DM to a user who does not accept them with 50007),
with the Relay and HandoffService on SQLite and PostgreSQL.

Alice talks to the bot; Maya and Sam have the moderator role, Mallory is a plain member."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from agents.base import TextDelta
from bridges.cases import DeskWords
from bridges.controls import ControlNotices
from bridges.discord.desk import DeskReplies
from bridges.discord.takeover_commands import TakeoverReplies
from bridges.handoff_notices import UserNotices
from bridges.render import IN_PROGRESS
from bridges.takeover import TakeoverNotices, TakeoverWords
from fakes.discord import FakeChannel, FakeDiscord, FakeMessage, FakeUser
from models import Handoff, HandoffStatus, Role, TranscriptEntry
from tests.test_discord_desk import EPHEMERAL, NO_PINGS, App, World, fields, texts
from tests.test_discord_desk import app as app  # the fixtures
from tests.test_discord_desk import world as world

STOPPED = f"Once upon a time {ControlNotices.stopped_mark}"
"""What the user keeps of a reply a takeover stopped: the text so far, marked stopped."""

pytestmark = pytest.mark.e2e


async def private(
    fake: FakeDiscord, channel: FakeChannel, by: FakeUser, /, *name: str, **options: object
) -> str:
    """Run `/name` and return its answer, which only the one who ran it sees."""
    answer = await fake.answer(await fake.slash(channel, by, *name, **options))  # type: ignore[arg-type]
    assert answer.flags & EPHEMERAL, answer.content
    return answer.content


async def alice_says_hello(world: World) -> FakeMessage:
    """Alice talks to the assistant in #general; returns her message once it is answered."""
    said = await world.fake.user_says(world.general, world.alice, f"<@{world.fake.bot.id}> hello")
    await world.fake.wait_for_texts(world.general, ["scripted: hello"])
    return said


async def take_over(fake: FakeDiscord, message: FakeMessage, by: FakeUser) -> str:
    """Use the message menu "Take over conversation" on `message`; its answer only `by` sees."""
    answer = await fake.answer(await fake.message_menu(message, by, "Take over conversation"))
    assert answer.flags & EPHEMERAL, answer.content
    return answer.content


async def entries(app: App, role: Role) -> list[str]:
    async with app.db() as session:
        found = await session.scalars(
            select(TranscriptEntry.text).where(TranscriptEntry.role == role).order_by(TranscriptEntry.id)
        )
        return list(found)


async def handoffs(app: App) -> list[Handoff]:
    async with app.db() as session:
        return list(await session.scalars(select(Handoff).order_by(Handoff.id)))


async def test_takeover_mid_stream_stops_the_reply_keeps_its_text_and_opens_a_claimed_case(
    world: World, app: App
) -> None:
    fake, alice, maya = world.fake, world.alice, world.maya
    never = asyncio.Event()
    app.agent.script["tell me a story"] = [TextDelta("Once upon a time"), never, TextDelta(" there was")]
    dm = fake.dm_channel(alice)
    await fake.user_says(dm, alice, "tell me a story")
    await fake.wait_for_texts(dm, [f"Once upon a time {IN_PROGRESS}"])  # still streaming

    answer = await private(fake, world.mods, maya, "takeover", user=alice)
    case = (await handoffs(app))[0]
    assert answer == TakeoverWords.taken.format(user="alice", id=case.id)
    # the reply ends on the text so far, then the user learns who joined
    await fake.wait_for_texts(dm, [STOPPED, UserNotices.claimed.format(name="maya")])
    assert not never.is_set()
    assert case.status is HandoffStatus.CLAIMED and case.requested_by == "takeover"
    assert case.claimed_by == f"discord:{maya.id}" and case.claimed_by_name == "maya"
    assert await entries(app, Role.AGENT) == [STOPPED]

    notification = await app.notification()
    assert notification.content == DeskReplies.taken_over.format(
        id=case.id, moderator="maya", user="alice", platform="discord"
    )
    assert notification.allowed_mentions == [NO_PINGS] and not notification.pinged
    assert fields(notification)["Status"] == "Claimed by maya"
    assert fields(notification)["Reason"] == TakeoverWords.taken_reason.format(name="maya")
    audit = f"took over the conversation of alice (discord user {alice.id}) (case #{case.id})"
    await fake.wait_until(lambda: any(audit in m.content for m in fake.bot_messages(world.log)), what="audit")

    # then a case like any other: both ways through its thread, and back to the assistant
    thread = await app.thread(notification)
    await fake.user_says(dm, alice, "wait, who are you?")
    await fake.wait_until(lambda: "**alice:** wait, who are you?" in texts(fake, thread), what="relay")
    await fake.user_says(thread, maya, "Hi Alice, I'm from the support team")
    await fake.wait_until(
        lambda: texts(fake, dm)[-1] == "maya (moderator): Hi Alice, I'm from the support team"
    )
    assert await private(fake, thread, maya, "close") == DeskWords.closed.format(id=case.id)
    await fake.user_says(dm, alice, "thanks")
    await fake.wait_until(lambda: texts(fake, dm)[-1] == "scripted: thanks", what="the assistant back")


async def test_take_over_from_a_message_and_when_someone_already_holds_the_case(
    world: World, app: App
) -> None:
    fake, alice, maya, sam = world.fake, world.alice, world.maya, world.sam
    answer = await take_over(fake, await alice_says_hello(world), maya)
    (case,) = await handoffs(app)
    assert answer == TakeoverWords.taken.format(user="alice", id=case.id)
    await fake.wait_for_texts(world.general, ["scripted: hello", UserNotices.claimed.format(name="maya")])

    held = TakeoverWords.held_by.format(name="maya", user="alice", id=case.id)
    assert await private(fake, world.mods, sam, "takeover", user=alice) == held
    thread = await app.thread(await app.notification())
    assert await private(fake, thread, sam, "takeover") == held  # alone in a case's thread: its user
    mine = TakeoverWords.yours_already.format(user="alice", id=case.id)
    assert (
        await private(fake, world.mods, maya, "takeover", platform="discord", user_id=str(alice.id)) == mine
    )
    assert await take_over(fake, fake.bot_messages(world.general)[0], maya) == TakeoverReplies.not_a_user
    assert len(await handoffs(app)) == 1


async def test_only_desk_moderators_in_the_desk_server_and_only_users_with_a_conversation(
    world: World, app: App
) -> None:
    fake, alice, maya, mallory = world.fake, world.alice, world.maya, world.mallory
    said = await alice_says_hello(world)
    assert await private(fake, world.general, mallory, "takeover", user=alice) == DeskWords.not_moderator
    assert await take_over(fake, said, mallory) == DeskWords.not_moderator
    assert await private(fake, world.general, mallory, "contact", user=alice) == DeskWords.not_moderator
    # Manage Server elsewhere is no authority over the desk
    elsewhere = fake.add_guild("Maya's own server", maya)
    lounge = fake.add_text_channel(elsewhere, "lounge")
    fake.add_member(elsewhere, alice)
    await app.restart()  # the bot joins it
    assert await private(fake, lounge, maya, "takeover", user=alice) == DeskWords.not_moderator
    assert await private(fake, lounge, maya, "contact", user=alice) == DeskWords.not_moderator

    nobody = TakeoverWords.no_conversation.format(user="mallory")
    assert await private(fake, world.mods, maya, "takeover", user=mallory) == nobody
    assert await private(fake, world.mods, maya, "takeover") == TakeoverReplies.takeover_usage
    await private(fake, world.mods, maya, "block", user=alice)
    blocked = TakeoverWords.blocked.format(user="alice")
    assert await private(fake, world.mods, maya, "takeover", user=alice) == blocked
    assert await private(fake, world.mods, maya, "contact", user=alice) == blocked
    assert await handoffs(app) == []
    assert texts(fake, world.general) == ["scripted: hello"]  # nobody was told anything


async def test_contact_opens_a_claimed_case_in_a_dm_unless_the_user_takes_no_dms(
    world: World, app: App
) -> None:
    fake, alice, maya, mallory = world.fake, world.alice, world.maya, world.mallory
    mallory.dms_open = False
    closed = TakeoverReplies.dms_closed.format(user="mallory")
    assert await private(fake, world.mods, maya, "contact", user=mallory) == closed
    assert await handoffs(app) == []

    answer = await private(fake, world.mods, maya, "contact", user=alice)
    (case,) = await handoffs(app)
    assert answer == TakeoverWords.contacted.format(user="alice", id=case.id)
    assert case.status is HandoffStatus.CLAIMED and case.requested_by == "contact"
    dm = fake.dm_channel(alice)
    assert texts(fake, dm) == [TakeoverNotices.intro.format(name="maya")]
    notification = await app.notification()
    assert notification.content == DeskReplies.contacted.format(
        id=case.id, moderator="maya", user="alice", platform="discord"
    )
    assert not notification.pinged
    audit = f"contacted alice (discord user {alice.id}) (case #{case.id})"
    await fake.wait_until(lambda: any(audit in m.content for m in fake.bot_messages(world.log)), what="audit")

    thread = await app.thread(notification)
    await fake.user_says(dm, alice, "sure, what is it?")
    await fake.wait_until(lambda: "**alice:** sure, what is it?" in texts(fake, thread), what="the reply")
    assert app.agent.turns == []  # the assistant never saw it
    assert await private(fake, world.mods, maya, "contact", user=alice) == TakeoverWords.yours_already.format(
        user="alice", id=case.id
    )
