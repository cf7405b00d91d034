"""The Discord moderator desk end to end: the real discord.py client against the fake Discord, with the
Relay and HandoffService on SQLite and PostgreSQL, wired as bot.py wires them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import HandoffRequested, Message
from bridges.cases import DeskWords
from bridges.discord.bridge import DiscordBridge
from bridges.discord.config import DiscordConfig, DiscordDeskConfig
from bridges.discord.desk import DeskReplies
from bridges.handoff import HandoffService
from bridges.handoff_notices import UserNotices
from bridges.handoff_policy import HandoffPolicy
from bridges.relay import Notices, Relay
from bridges.surface import Inbound, Surface
from fakes.discord import MANAGE_GUILD, FakeChannel, FakeDiscord, FakeGuild, FakeMessage, FakeUser
from models import Conversation, Handoff, HandoffStatus, TranscriptEntry
from tests.agent_support import relay_policy
from tests.clock import Clock
from tests.discord_support import discord_config
from tests.surfaces import RecordingSurface
from tests.test_discord import WINDOW, ScriptedAgent

NO_PINGS = {"parse": []}
EPHEMERAL = 1 << 6


@dataclass
class World:
    fake: FakeDiscord
    guild: FakeGuild
    general: FakeChannel
    mods: FakeChannel
    log: FakeChannel
    moderators: int
    """The moderator role, also the one pinged."""
    alice: FakeUser
    maya: FakeUser
    sam: FakeUser
    mallory: FakeUser
    """A member without the moderator role."""
    boss: FakeUser
    """Has Manage Server but not the moderator role."""


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with FakeDiscord(message_window=WINDOW) as fake:
        owner = fake.add_user("owner")
        guild = fake.add_guild("Test server", owner)
        moderators = fake.add_role(guild, "Moderators")
        admins = fake.add_role(guild, "Admins", MANAGE_GUILD)
        alice, maya, sam, mallory, boss = (
            fake.add_user(n) for n in ("alice", "maya", "sam", "mallory", "boss")
        )
        for member in (alice, mallory):
            fake.add_member(guild, member)
        for member in (maya, sam):
            fake.add_member(guild, member, (moderators,))
        fake.add_member(guild, boss, (admins,))
        channels = [fake.add_text_channel(guild, name) for name in ("general", "mods", "handoff-log")]
        yield World(fake, guild, *channels, moderators, alice, maya, sam, mallory, boss)


class App:
    """What bot.py builds around the Discord bridge; `restart` builds all of it anew on the same database."""

    def __init__(self, world: World, db: async_sessionmaker[AsyncSession]) -> None:
        self.world, self.db = world, db
        self.clock = Clock()
        self.console = RecordingSurface()
        """Where console users are reached: a user on another platform, served from Discord."""
        self.agent = ScriptedAgent()
        self.agent.script["help"] = [Message("Let me get a person."), HandoffRequested("billing question")]
        self.policy = HandoffPolicy(expire_after=timedelta(minutes=10), escalate_after=timedelta(minutes=3))
        """Kept across restarts; a test may change it before `start`."""
        self.members_intent = False

    async def start(self) -> None:
        config = discord_config(
            self.world.fake,
            message_content_intent=True,
            members_intent=self.members_intent,
            handoff=DiscordDeskConfig(
                channel=self.world.mods.id,
                moderator_roles=(self.world.moderators,),
                ping_role=self.world.moderators,
                log_channel=self.world.log.id,
            ),
        )
        self.handoffs = HandoffService(
            self.db,
            self.policy,
            surfaces=self._surface,
            jump_link=lambda conversation: self.bridge.jump_link(conversation),
            now=self.clock,
        )
        policy = replace(relay_policy("scripted"), user_burst=50)
        relay = Relay(self.db, {"scripted": self.agent}, policy, handoffs=self.handoffs, now=self.clock)
        self.bridge = DiscordBridge(config, relay)
        await self.bridge.start()
        assert self.bridge.desk is not None
        self.handoffs.desks.append(self.bridge.desk)

    def _surface(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        return (
            self.console if platform == "console" else self.bridge.surface_for(platform, chat_id, thread_id)
        )

    async def restart(self) -> None:
        await self.bridge.close(grace=1.0)
        await self.start()

    async def handoff(self) -> Handoff:
        async with self.db() as session:
            handoff = (await session.scalars(select(Handoff).order_by(Handoff.id.desc()))).first()
        assert handoff is not None
        return handoff

    async def internal_notes(self) -> list[str]:
        """The transcript's internal entries (moderators' notes), oldest first."""
        async with self.db() as session:
            found = await session.scalars(
                select(TranscriptEntry.text).where(TranscriptEntry.internal).order_by(TranscriptEntry.id)
            )
            return list(found)

    async def notification(self) -> FakeMessage:
        fake = self.world.fake
        return await fake.wait_until(
            lambda: next((m for m in fake.bot_messages(self.world.mods) if m.embeds), None),
            what="a handoff notification",
        )

    async def thread(self, notification: FakeMessage) -> FakeChannel:
        """The handoff's thread: started on the notification, so it has the notification's id."""
        fake = self.world.fake
        return await fake.wait_until(lambda: fake.channels.get(notification.id), what="a handoff thread")

    async def press(self, notification: FakeMessage, action: str, user: FakeUser) -> FakeMessage:
        """Press a desk button and return the answer only the presser sees."""
        custom_id = f"sbh:{action}:{(await self.handoff()).id}"
        answer = await self.world.fake.answer(await self.world.fake.press(notification, custom_id, user))
        assert answer.flags & EPHEMERAL
        return answer

    async def ask_for_help(self) -> tuple[FakeChannel, FakeMessage, FakeChannel]:
        """Alice asks the bot in a DM and the agent hands her over: (DM, notification, thread)."""
        dm = self.world.fake.dm_channel(self.world.alice)
        await self.world.fake.user_says(dm, self.world.alice, "help")
        await self.world.fake.wait_for_texts(dm, ["Let me get a person.", Notices.handoff_requested])
        notification = await self.notification()
        return dm, notification, await self.thread(notification)


@pytest.fixture
async def app(world: World, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    app = App(world, db)
    await app.start()
    yield app
    await app.bridge.close(grace=1.0)


def fields(message: FakeMessage) -> dict[str, str]:
    return {field["name"]: field["value"] for field in message.embeds[0]["fields"]}


def texts(fake: FakeDiscord, channel: FakeChannel) -> list[str]:
    return [m.content for m in fake.bot_messages(channel)]


def assert_never_pinged(messages: list[FakeMessage]) -> None:
    for message in messages:
        assert message.allowed_mentions and all(a == NO_PINGS for a in message.allowed_mentions), (
            message.content
        )
        assert not message.pinged


@pytest.mark.e2e
async def test_notification_shows_everything_and_pings_only_the_role(world: World, app: App) -> None:
    fake = world.fake
    await fake.user_says(world.general, world.alice, f"<@{fake.bot.id}> hello")
    await fake.wait_for_texts(world.general, ["scripted: hello"])
    await fake.user_says(world.general, world.alice, f"<@{fake.bot.id}> help")
    await fake.wait_for_texts(
        world.general, ["scripted: hello", "Let me get a person.", Notices.handoff_requested]
    )
    notification = await app.notification()
    handoff_id = (await app.handoff()).id
    role = world.moderators

    assert (
        notification.content
        == f"<@&{role}> Handoff #{handoff_id}: **alice** (discord) asked for a moderator."
    )
    assert notification.allowed_mentions == [{"parse": [], "roles": [role]}]
    assert notification.pinged == {f"role:{role}"}
    (embed,) = notification.embeds
    jump = f"https://discord.com/channels/{world.guild.id}/{world.general.id}"
    assert embed["title"] == f"Handoff #{handoff_id}" and embed["url"] == jump
    assert embed["description"] == "\n".join(
        [
            "**alice:** hello",
            "**Assistant:** scripted: hello",
            "**alice:** help",
            "**Assistant:** Let me get a person.",
        ]
    )
    assert fields(notification) == {
        "Platform": "discord",
        "User": f"alice ({world.alice.id})",
        "Status": "Waiting for a moderator",
        "Reason": "billing question",
    }
    buttons = notification.buttons()
    assert [(b.get("label"), b.get("custom_id"), b.get("url")) for b in buttons] == [
        ("Claim", f"sbh:claim:{handoff_id}", None),
        ("Resolve", f"sbh:resolve:{handoff_id}", None),
        ("Return to bot", f"sbh:return:{handoff_id}", None),
        ("Open the chat", None, jump),
    ]
    thread = await app.thread(notification)
    assert (thread.type, thread.parent_id, thread.name) == (11, world.mods.id, f"#{handoff_id} alice")
    (logged,) = await fake.wait_until(lambda: fake.bot_messages(world.log), what="a log entry")
    assert (
        logged.content
        == f"handoff #{handoff_id} requested: billing question\ndiscord user alice ({world.alice.id})"
    )
    assert not logged.attachments

    hostile = f"are you there? @everyone <@&{role}> <@{world.maya.id}>"
    await fake.user_says(world.general, world.alice, f"<@{fake.bot.id}> {hostile}")
    await fake.wait_for_texts(thread, [f"**alice:** {hostile}"])
    assert texts(fake, world.general)[-1] == Notices.handoff_pending
    assert_never_pinged(fake.bot_messages(thread))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(
    ("action", "status", "notice", "answer"),
    [
        ("resolve", HandoffStatus.RESOLVED, UserNotices.resolved, "is resolved; alice is back"),
        ("return", HandoffStatus.RETURNED, UserNotices.returned, "is handed back to the assistant"),
    ],
)
async def test_claim_relay_both_ways_in_order_then_close(
    world: World, app: App, action: str, status: HandoffStatus, notice: str, answer: str
) -> None:
    fake = world.fake
    dm, notification, thread = await app.ask_for_help()
    handoff_id = (await app.handoff()).id

    claimed = await app.press(notification, "claim", world.maya)
    assert (
        claimed.content
        == f"You claimed handoff #{handoff_id}. What you write in its thread now goes to alice."
    )
    seen = ["Let me get a person.", Notices.handoff_requested, UserNotices.claimed.format(name="maya")]
    await fake.wait_for_texts(dm, seen)
    assert fields(notification)["Status"] == "Claimed by maya"
    assert [b["label"] for b in notification.buttons()] == ["Resolve", "Return to bot"]
    await fake.wait_for_texts(thread, [DeskReplies.thread_claimed.format(name="maya")])

    written = ["Hi, I can help.", "@everyone this must not ping", f"for <@{world.alice.id}>, a third"]
    for text in written:
        await fake.user_says(thread, world.maya, text)
    seen += ["maya (moderator): Hi, I can help.", "maya (moderator): @everyone this must not ping"]
    seen += ["maya (moderator): for @alice, a third"]
    await fake.wait_for_texts(dm, seen)
    for text in ("one", "two", "three"):
        await fake.user_says(dm, world.alice, text)
    shown = [
        DeskReplies.thread_claimed.format(name="maya"),
        "**alice:** one",
        "**alice:** two",
        "**alice:** three",
    ]
    await fake.wait_for_texts(thread, shown)

    closed = await app.press(notification, action, world.maya)
    assert answer in closed.content
    await fake.wait_for_texts(dm, [*seen, notice])
    closer = "Resolved by maya" if status is HandoffStatus.RESOLVED else "Returned to the bot by maya"
    assert fields(notification)["Status"] == f"{closer} (claimed by maya)"
    assert notification.components == []
    await fake.wait_for_texts(
        thread, [*shown, DeskReplies.thread_closed.format(status=f"{closer} (claimed by maya)")]
    )
    logged = await fake.wait_until(
        lambda: next((m for m in fake.bot_messages(world.log) if m.attachments), None), what="the transcript"
    )
    assert logged.content.startswith(f"handoff #{handoff_id} {status.value} by maya (claimed by maya)")
    (attachment,) = logged.attachments
    assert attachment.filename == f"handoff-{handoff_id}.txt"
    transcript = attachment.text
    assert f"claimed by maya; {status.value} by maya" in transcript
    lines = [
        "user: help",
        "agent: Let me get a person.",
        f"moderator discord:{world.maya.id}: Hi, I can help.",
    ]
    lines += [f"moderator discord:{world.maya.id}: for @alice, a third", "user: one", "user: three"]
    for line in lines:
        assert line in transcript
    assert_never_pinged([*fake.bot_messages(dm), *fake.bot_messages(thread), *fake.bot_messages(world.log)])

    await fake.user_says(dm, world.alice, "back to the bot?")
    await fake.wait_for_texts(dm, [*seen, notice, "scripted: back to the bot?"])


@pytest.mark.e2e
async def test_simultaneous_claims_have_one_winner_and_the_other_is_told_who(world: World, app: App) -> None:
    fake = world.fake
    dm, notification, _ = await app.ask_for_help()
    handoff_id = (await app.handoff()).id
    custom_id = f"sbh:claim:{handoff_id}"
    presses = await asyncio.gather(*(fake.press(notification, custom_id, m) for m in (world.maya, world.sam)))
    answers = [(await fake.answer(press)).content for press in presses]
    handoff = await app.handoff()
    winner, loser = (
        (world.maya, world.sam)
        if handoff.claimed_by == f"discord:{world.maya.id}"
        else (world.sam, world.maya)
    )
    by_presser = dict(zip((world.maya.username, world.sam.username), answers, strict=True))
    assert by_presser[winner.username].startswith(f"You claimed handoff #{handoff_id}.")
    assert by_presser[loser.username] == DeskReplies.claimed_already.format(name=winner.username)
    assert handoff.status is HandoffStatus.CLAIMED and handoff.claimed_by_name == winner.username
    assert fields(notification)["Status"] == f"Claimed by {winner.username}"
    await fake.wait_for_texts(
        dm,
        ["Let me get a person.", Notices.handoff_requested, UserNotices.claimed.format(name=winner.username)],
    )


@pytest.mark.e2e
async def test_only_moderators_claim_and_only_the_claimer_reaches_the_user(world: World, app: App) -> None:
    fake = world.fake
    dm, notification, thread = await app.ask_for_help()

    refused = await app.press(notification, "claim", world.mallory)
    assert refused.content == DeskReplies.not_moderator
    assert (await app.handoff()).status is HandoffStatus.REQUESTED

    mallory_says = await fake.user_says(thread, world.mallory, "let me answer her")
    sam_says = await fake.user_says(thread, world.sam, "I'll take it from here")
    replies = await fake.wait_for_texts(thread, [DeskReplies.not_passed_on, DeskWords.claim_first])
    assert [reply.reference for reply in replies] == [mallory_says, sam_says]

    claimed = await app.press(notification, "claim", world.boss)  # Manage Server counts as a moderator
    assert claimed.content.startswith("You claimed")
    await fake.user_says(thread, world.sam, "ok, so can I?")  # a note: kept, not answered, not sent
    await fake.user_says(thread, world.boss, "I'm here.")
    await fake.wait_for_texts(
        thread, [*(r.content for r in replies), DeskReplies.thread_claimed.format(name="boss")]
    )
    # boss's message came last into the thread, so everything before it has been decided by now
    await fake.wait_for_texts(
        dm,
        [
            "Let me get a person.",
            Notices.handoff_requested,
            UserNotices.claimed.format(name="boss"),
            "boss (moderator): I'm here.",
        ],
    )
    assert_never_pinged(fake.bot_messages(thread))
    assert [turn.text for turn in app.agent.turns] == ["help"]  # the thread is the desk's, not a chat
    assert await app.internal_notes() == ["I'll take it from here", "ok, so can I?"]


@pytest.mark.e2e
async def test_escalation_pings_once_and_expiry_closes_the_notification(world: World, app: App) -> None:
    fake = world.fake
    dm, notification, thread = await app.ask_for_help()
    handoff_id = (await app.handoff()).id
    app.clock.now += timedelta(minutes=4)
    await app.handoffs.tick()
    role = world.moderators
    (_, ping) = fake.bot_messages(world.mods)
    assert (
        ping.content == f"<@&{role}> Handoff #{handoff_id} from **alice** is still waiting for a moderator."
    )
    assert ping.reference is notification
    assert ping.allowed_mentions == [{"parse": [], "roles": [role]}] and ping.pinged == {f"role:{role}"}
    assert fields(notification)["Status"] == "Still waiting for a moderator (escalated)"
    await app.handoffs.tick()
    app.clock.now += timedelta(minutes=1)
    await app.handoffs.tick()
    assert len(fake.bot_messages(world.mods)) == 2  # pinged once only

    app.clock.now += timedelta(minutes=6)
    await app.handoffs.tick()
    assert fields(notification)["Status"] == "Expired: nobody claimed it in time"
    assert notification.components == []
    expired = DeskReplies.thread_closed.format(status="Expired: nobody claimed it in time")
    await fake.wait_for_texts(thread, [expired])
    await fake.wait_for_texts(dm, ["Let me get a person.", Notices.handoff_requested, UserNotices.expired])
    (*_, logged) = fake.bot_messages(world.log)
    assert logged.content.startswith(f"handoff #{handoff_id} expired by timeout (claimed by nobody)")
    assert "user: help" in logged.attachments[0].text


@pytest.mark.e2e
async def test_restart_while_claimed_keeps_buttons_and_thread_relay_working(world: World, app: App) -> None:
    fake = world.fake
    dm, notification, thread = await app.ask_for_help()
    await app.press(notification, "claim", world.maya)
    seen = ["Let me get a person.", Notices.handoff_requested, UserNotices.claimed.format(name="maya")]
    await fake.wait_for_texts(dm, seen)

    await app.restart()  # new bridge, relay and handoff service; only the database remains
    await fake.user_says(thread, world.maya, "Still with you after a restart.")
    seen.append("maya (moderator): Still with you after a restart.")
    await fake.wait_for_texts(dm, seen)
    await fake.user_says(dm, world.alice, "great")
    await fake.wait_until(
        lambda: texts(fake, thread)[-1:] == ["**alice:** great"], what="alice's reply in the thread"
    )
    resolved = await app.press(notification, "resolve", world.maya)
    assert resolved.content.startswith(f"Handoff #{(await app.handoff()).id} is resolved")
    await fake.wait_for_texts(dm, [*seen, UserNotices.resolved])
    assert fields(notification)["Status"] == "Resolved by maya (claimed by maya)"


@pytest.mark.e2e
async def test_a_user_on_another_platform_is_served_from_discord(world: World, app: App) -> None:
    fake = world.fake
    carol = Inbound(platform="console", chat_id="c1", user_id="carol", display_name="Carol", text="help")
    surface = RecordingSurface()
    await app.bridge.relay.handle(carol, surface)
    notification = await app.notification()
    thread = await app.thread(notification)
    assert fields(notification)["Platform"] == "console" and fields(notification)["User"] == "Carol (carol)"
    assert "url" not in notification.embeds[0]  # no jump link to a console
    assert [b["label"] for b in notification.buttons()] == ["Claim", "Resolve", "Return to bot"]

    await app.press(notification, "claim", world.sam)
    await fake.user_says(thread, world.sam, "Hello Carol, Sam here.")
    expected = [UserNotices.claimed.format(name="sam"), "sam (moderator): Hello Carol, Sam here."]
    await app.console.wait_for(lambda: app.console.visible_texts() == expected)
    await app.bridge.relay.handle(Inbound("console", "c1", "carol", "Carol", "thanks Sam"), surface)
    await fake.wait_until(
        lambda: texts(fake, thread)[-1:] == ["**Carol:** thanks Sam"], what="carol in the thread"
    )
    async with app.db() as session:
        conversation = (await session.scalars(select(Conversation))).one()
    assert app.bridge.jump_link(conversation) is None


async def test_a_desk_needs_the_message_content_intent() -> None:
    with pytest.raises(ValidationError, match="message_content_intent"):
        DiscordConfig(token=SecretStr("t"), handoff=DiscordDeskConfig(channel=1))
    assert DiscordConfig(token=SecretStr("t")).handoff is None  # no desk unless configured


async def test_the_fake_refuses_what_discord_refuses_for_desk_messages() -> None:
    async with FakeDiscord(message_limit=50) as fake:
        owner = fake.add_user("owner")
        channel = fake.add_text_channel(fake.add_guild("g", owner), "mods")
        auth = {"Authorization": f"Bot {fake.token}"}
        url = f"{fake.api_base}/channels/{channel.id}/messages"
        refused = [
            {"embeds": [{"description": "x" * 4097}]},
            {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
            {"embeds": [{"description": "x" * 4000}, {"description": "x" * 2001}]},
            {"embeds": [{"title": "t", "url": "discord.com/channels/1/2"}]},
            {"content": "<@&1>", "allowed_mentions": {"parse": ["roles"], "roles": ["1"]}},
        ]
        async with aiohttp.ClientSession(headers=auth) as http:
            for body in refused:
                async with http.post(url, json=body) as response:
                    assert response.status == 400, body
            async with http.post(url, json={"content": "starter"}) as response:
                starter = await response.json()
            thread_url = f"{url}/{starter['id']}/threads"
            async with http.post(thread_url, json={"name": "first"}) as response:
                assert response.status == 201
            async with http.post(thread_url, json={"name": "second"}) as response:
                assert response.status == 400 and (await response.json())["code"] == 160004
