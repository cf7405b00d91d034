"""Moderators' `/block` and `/unblock` on both platforms, end to end: the real discord.py and
python-telegram-bot clients against their loopback fakes, both desks, and one Relay on the database, as
bot.py wires them. A block is a flag on the user's row, so whichever platform it is set from, the user's
messages are ignored wherever they arrive.

"Ignored" is observed where the Relay decides it (its log line) and then checked for its effects: no reply,
no agent turn, nothing passed to a handoff's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from discord.utils import escape_markdown
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import TextDelta
from bridges.discord.bridge import DiscordBridge
from bridges.discord.cog import Replies as DiscordReplies
from bridges.discord.config import DiscordDeskConfig
from bridges.handoff import HandoffService
from bridges.moderation import Replies as ModerationReplies
from bridges.relay import Notices, Relay
from bridges.surface import Surface
from bridges.telegram.bridge import TelegramBridge
from bridges.telegram.handlers import Replies as TelegramReplies
from fakes.discord import FakeChannel, FakeDiscord, FakeInteraction, FakeMessage
from fakes.discord import FakeUser as DiscordUser
from fakes.telegram import FakeChat, FakeTelegram, FakeUser
from fakes.telegram import FakeMessage as TelegramMessage
from fakes.telegram.harness import ADMIN_ID, HANDOFF_POLICY, POLICY, ScriptedAgent, bridge
from models import Conversation, Handoff, HandoffStatus, User, utcnow
from tests.discord_support import discord_config
from tests.test_discord import WINDOW
from tests.test_discord_desk import EPHEMERAL
from tests.test_telegram_desk import QUICK, ROOMY

pytestmark = pytest.mark.e2e


@dataclass
class World:
    """Both platforms and the people on them."""

    discord: FakeDiscord
    general: FakeChannel
    mods: FakeChannel
    """The Discord desk channel."""
    moderators: int
    maya: DiscordUser
    """A Discord moderator (has the desk's moderator role)."""
    alice: DiscordUser
    """A Discord member with no special role."""
    mod_log: FakeChannel
    """The Discord desk's log channel."""
    eve: DiscordUser
    """Owns another server the bot is in (so has Manage Server there), and nothing on the desk's."""
    eves_lobby: FakeChannel
    telegram: FakeTelegram
    telegram_url: str
    tg_mods: FakeChat
    """The Telegram desk: a forum supergroup whose members are moderators."""
    lobby: FakeChat
    """A Telegram group the bot serves."""
    sam: FakeUser
    """A member of the Telegram desk, so a moderator."""
    ada: FakeUser
    """A configured Telegram admin, not in the desk."""
    uma: FakeUser
    mallory: FakeUser
    """A Telegram user in the lobby, not a moderator."""
    tg_log: FakeChat
    """The Telegram desk's log chat."""


@pytest.fixture
async def world() -> AsyncIterator[World]:
    telegram = FakeTelegram(limits=ROOMY)
    async with FakeDiscord(message_window=WINDOW) as discord, telegram.running() as telegram_url:
        guild = discord.add_guild("Support", discord.add_user("owner"))
        moderators = discord.add_role(guild, "Moderators")
        maya, alice = discord.add_user("maya"), discord.add_user("alice")
        discord.add_member(guild, maya, (moderators,))
        discord.add_member(guild, alice)
        general, mods, mod_log = (discord.add_text_channel(guild, n) for n in ("general", "mods", "log"))
        eve = discord.add_user("eve")
        eves_lobby = discord.add_text_channel(discord.add_guild("Eve's place", eve), "lobby")
        tg_mods, lobby = telegram.group("Moderators", forum=True), telegram.group("Lobby")
        sam, uma, mallory = telegram.user("Sam"), telegram.user("Uma"), telegram.user("Mallory")
        telegram.join(tg_mods, sam)
        for member in (uma, mallory):
            telegram.join(lobby, member)
        yield World(
            discord=discord,
            general=general,
            mods=mods,
            moderators=moderators,
            maya=maya,
            alice=alice,
            mod_log=mod_log,
            eve=eve,
            eves_lobby=eves_lobby,
            telegram=telegram,
            telegram_url=telegram_url,
            tg_mods=tg_mods,
            lobby=lobby,
            sam=sam,
            ada=FakeUser(ADMIN_ID, "Ada"),
            uma=uma,
            mallory=mallory,
            tg_log=telegram.group("Moderation log"),
        )


@dataclass
class App:
    """One Relay and HandoffService serving both bridges and both desks."""

    world: World
    relay: Relay
    agent: ScriptedAgent
    discord: DiscordBridge
    telegram: TelegramBridge
    db: async_sessionmaker[AsyncSession]
    clock: Clock

    async def discord_command(
        self, channel: FakeChannel, user: DiscordUser, name: str, **options: str
    ) -> str:
        """Run a slash command; returns the answer, which only its user sees."""
        fake = self.world.discord
        return await _private_answer(fake, await fake.slash(channel, user, name, **options))

    async def telegram_command(
        self,
        chat: FakeChat,
        user: FakeUser,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to: TelegramMessage | None = None,
    ) -> str:
        """Send a command; returns the bot's answer, the next message it posts there."""
        fake = self.world.telegram
        before = len(fake.bot_messages(chat, thread_id))
        fake.say(chat, user, text, thread_id=thread_id, reply_to=reply_to)
        await fake.wait_for(
            lambda: len(fake.bot_messages(chat, thread_id)) > before, what=f"the answer to {text!r}"
        )
        return fake.bot_messages(chat, thread_id)[before].text

    async def telegram_says(self, chat: FakeChat, user: FakeUser, text: str, expected: str) -> None:
        """`user` says `text` and the bot answers `expected` in that chat."""
        fake = self.world.telegram
        fake.say(chat, user, text)
        await fake.wait_for(
            lambda: any(m.text == expected for m in fake.bot_messages(chat)), what=f"the reply {expected!r}"
        )

    async def handoff(self) -> Handoff:
        async with self.db() as session:
            found = (await session.scalars(select(Handoff).order_by(Handoff.id.desc()))).first()
        assert found is not None
        return found

    async def discord_thread(self) -> FakeChannel:
        """The Discord desk's thread of the newest handoff (started on its notification)."""
        fake = self.world.discord
        note = await fake.wait_until(
            lambda: next((m for m in fake.bot_messages(self.world.mods) if m.embeds), None),
            what="the Discord notification",
        )
        return await fake.wait_until(lambda: fake.channels.get(note.id), what="the handoff thread")

    async def telegram_topic(self, handoff_id: int) -> int:
        """The Telegram desk's topic of a handoff."""
        fake, heading = self.world.telegram, f"🆘 Handoff #{handoff_id} "

        def topic() -> int | None:
            notes = (m for m in fake.bot_messages(self.world.tg_mods) if m.text.startswith(heading))
            return next((m.thread_id for m in notes), None)

        await fake.wait_for(lambda: topic() is not None, what="the Telegram notification")
        found = topic()
        assert found is not None
        return found


@pytest.fixture
async def app(world: World, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    bridges: dict[str, DiscordBridge | TelegramBridge] = {}

    def surface_for(platform: str, chat_id: str, thread_id: str) -> Surface | None:
        found = bridges.get(platform)
        return found.surface_for(platform, chat_id, thread_id) if found else None

    def jump_link(conversation: Conversation) -> str | None:
        found = bridges.get(conversation.platform)
        return found.jump_link(conversation) if found else None

    handoffs = HandoffService(db, HANDOFF_POLICY, surfaces=surface_for, jump_link=jump_link)
    agent = ScriptedAgent()
    clock = Clock()
    relay = Relay(db, {"scripted": agent}, POLICY, handoffs=handoffs, now=clock)
    w = world
    bridges["discord"] = DiscordBridge(
        discord_config(
            w.discord,
            message_content_intent=True,
            threads=True,
            handoff=DiscordDeskConfig(
                channel=w.mods.id, moderator_roles=(w.moderators,), log_channel=w.mod_log.id
            ),
        ),
        relay,
    )
    bridges["telegram"] = bridge(
        w.telegram,
        w.telegram_url,
        relay,
        handoff={"chat_id": w.tg_mods.id, "log_chat_id": w.tg_log.id},
        drafts=False,
        **QUICK,
    )
    async with AsyncExitStack() as stack:
        for platform_bridge in bridges.values():
            stack.push_async_callback(platform_bridge.close, 1.0)
            await platform_bridge.start()
            assert platform_bridge.desk is not None
            handoffs.desks.append(platform_bridge.desk)
        discord_bridge, telegram_bridge = bridges["discord"], bridges["telegram"]
        assert isinstance(discord_bridge, DiscordBridge) and isinstance(telegram_bridge, TelegramBridge)
        yield App(world, relay, agent, discord_bridge, telegram_bridge, db, clock)


Ignored = Callable[[str, str], Awaitable[None]]


@pytest.fixture
def ignored(caplog: pytest.LogCaptureFixture) -> Ignored:
    """`await ignored(platform, user_id)` returns once the Relay has ignored a message from that user."""
    caplog.set_level(logging.INFO, logger="bridges")

    async def wait(platform: str, user_id: str) -> None:
        line = f"ignoring a message from blocked user {platform}:{user_id}"
        await _until(lambda: any(r.getMessage() == line for r in caplog.records), what=line)

    return wait


async def test_a_discord_moderator_blocks_a_telegram_user_by_id_until_unblocked(
    world: World, app: App, ignored: Ignored
) -> None:
    uma, telegram = world.uma, world.telegram
    chat = telegram.private_chat(uma)
    await app.telegram_says(chat, uma, "hi", "scripted: hi (#1)")
    who = f"telegram user {uma.id}"

    answer = await app.discord_command(
        world.general, world.maya, "block", platform="telegram", user_id=str(uma.id)
    )
    assert answer == blocked(who)
    assert await app.relay.is_blocked("telegram", str(uma.id))
    telegram.say(chat, uma, "still there?")
    await ignored("telegram", str(uma.id))
    again = await app.discord_command(
        world.general, world.maya, "block", platform="telegram", user_id=str(uma.id)
    )
    assert again.startswith(
        f"{who} is already blocked, until someone uses /unblock (set by discord:{world.maya.id}"
    )

    answer = await app.discord_command(
        world.general, world.maya, "unblock", platform="telegram", user_id=str(uma.id)
    )
    assert answer == ModerationReplies.unblocked.format(who=who)
    await app.telegram_says(chat, uma, "back", "scripted: back (#2)")
    assert [m.text for m in telegram.bot_messages(chat)] == ["scripted: hi (#1)", "scripted: back (#2)"]
    assert [turn.text for turn in app.agent.turns] == ["hi", "back"]
    answer = await app.discord_command(
        world.general, world.maya, "unblock", platform="telegram", user_id=str(uma.id)
    )
    assert answer == ModerationReplies.unblocked_already.format(who=who)


async def test_discord_usage_errors_are_explained(world: World, app: App) -> None:
    for options in (
        {},
        {"platform": "telegram"},
        {"user_id": "123"},
        {"platform": "discord", "user_id": "x1"},
    ):
        assert await app.discord_command(world.general, world.maya, "block", **options) == (
            DiscordReplies.block_usage
        ), options


async def test_a_discord_moderator_blocks_a_member_picked_as_the_user_option(world: World, app: App) -> None:
    fake, alice = world.discord, world.alice
    answer = await _private_answer(fake, await _slash_naming(fake, world.general, world.maya, "block", alice))
    assert answer == blocked(f"**alice** (discord user {alice.id})")
    assert await app.relay.is_blocked("discord", str(alice.id))


async def test_non_moderators_are_refused_on_both_platforms_and_an_admin_blocks_by_reply(
    world: World, app: App, ignored: Ignored
) -> None:
    uma, lobby = world.uma, world.lobby
    refused = await app.discord_command(
        world.general, world.alice, "block", platform="telegram", user_id=str(uma.id)
    )
    assert refused == DiscordReplies.moderators_only
    greeting = world.telegram.say(lobby, uma, "hello everyone")
    for text, reply_to in (("/block", greeting), (f"/block telegram {uma.id}", None)):
        refused = await app.telegram_command(lobby, world.mallory, text, reply_to=reply_to)
        assert refused == TelegramReplies.moderators_only
    assert not await app.relay.is_blocked("telegram", str(uma.id))

    answer = await app.telegram_command(lobby, world.ada, "/block", reply_to=greeting)
    assert answer == blocked(f"Uma (telegram user {uma.id})")
    world.telegram.say(lobby, uma, f"@{world.telegram.bot.username} are you there?")
    await ignored("telegram", str(uma.id))
    assert app.agent.turns == []


async def test_block_in_a_discord_handoff_thread_blocks_its_user_and_leaves_the_handoff_open(
    world: World, app: App, ignored: Ignored
) -> None:
    uma, telegram, discord = world.uma, world.telegram, world.discord
    chat = telegram.private_chat(uma)
    await app.telegram_says(chat, uma, "/human", Notices.handoff_requested)
    thread = await app.discord_thread()
    handoff = await app.handoff()

    answer = await app.discord_command(thread, world.maya, "block")
    expected = blocked(f"**Uma** (telegram user {uma.id})")
    assert answer == expected + ModerationReplies.handoff_stays.format(id=handoff.id)
    assert (await app.handoff()).status is HandoffStatus.REQUESTED
    before = [m.content for m in discord.bot_messages(thread)]
    telegram.say(chat, uma, "hello?")
    await ignored("telegram", str(uma.id))
    assert [m.content for m in discord.bot_messages(thread)] == before  # nothing passed to the desk
    assert [m.text for m in telegram.bot_messages(chat)] == [Notices.handoff_requested]


async def test_block_in_a_telegram_topic_blocks_the_discord_user_of_that_handoff(
    world: World, app: App
) -> None:
    fake, alice = world.discord, world.alice
    dm = fake.dm_channel(alice)
    asked = await fake.slash(dm, alice, "human")
    assert (await fake.answer(asked)).content == Notices.handoff_requested
    handoff = await app.handoff()
    topic = await app.telegram_topic(handoff.id)

    answer = await app.telegram_command(world.tg_mods, world.sam, "/block", thread_id=topic)
    expected = blocked(f"alice (discord user {alice.id})")
    assert answer == expected + ModerationReplies.handoff_stays.format(id=handoff.id)
    assert (await app.handoff()).status is HandoffStatus.REQUESTED
    usage = await app.telegram_command(world.tg_mods, world.sam, "/unblock")  # outside any topic
    assert usage == TelegramReplies.block_usage


async def test_a_telegram_admin_blocks_a_discord_user_whose_dms_are_then_ignored(
    world: World, app: App, ignored: Ignored
) -> None:
    fake, alice, ada = world.discord, world.alice, world.ada
    admin_chat = world.telegram.private_chat(ada)
    for wrong in (
        "/block",
        "/block discord",
        "/block matrix 12",
        "/block discord abc",
    ):
        usage = await app.telegram_command(admin_chat, ada, wrong)
        assert usage == TelegramReplies.block_usage, wrong
    community = world.telegram.group("Community", forum=True)
    topic = world.telegram.open_topic(community, "Chat", by=world.uma)  # replies to its start name nobody
    usage = await app.telegram_command(community, ada, "/block", thread_id=topic)
    assert usage == TelegramReplies.block_usage
    assert not await app.relay.is_blocked("telegram", str(world.uma.id))
    who = f"discord user {alice.id}"
    answer = await app.telegram_command(admin_chat, ada, f"/block Discord {alice.id}")
    assert answer == blocked(who)

    dm = fake.dm_channel(alice)
    await fake.user_says(dm, alice, "hello?")
    await ignored("discord", str(alice.id))
    assert fake.bot_messages(dm) == [] and app.agent.turns == []

    answer = await app.telegram_command(admin_chat, ada, f"/unblock discord {alice.id}")
    assert answer == ModerationReplies.unblocked.format(who=who)
    await fake.user_says(dm, alice, "hello again")
    await fake.wait_for_texts(dm, ["scripted: hello again (#1)"])


async def test_manage_server_elsewhere_gives_no_right_to_block_or_unblock(world: World, app: App) -> None:
    """A spammer adds the public bot to his own server, where he has Manage Server: he can neither block a
    real moderator nor lift his own block. The desk's moderator blocks him, with a duration and a reason
    that both desks' logs show, with who, whom and where."""
    fake, eve, maya = world.discord, world.eve, world.maya
    for command, whom in (("block", maya), ("unblock", eve)):
        refused = await app.discord_command(
            world.eves_lobby, eve, command, platform="discord", user_id=str(whom.id)
        )
        assert refused == DiscordReplies.moderators_only
    assert not await app.relay.is_blocked("discord", str(maya.id))

    answer = await app.discord_command(
        world.general,
        maya,
        "block",
        platform="discord",
        user_id=str(eve.id),
        duration="2h",
        reason="spam links",
    )
    until = f"{app.clock() + timedelta(hours=2):%Y-%m-%d %H:%M} UTC"
    assert answer == ModerationReplies.blocked.format(
        who=f"discord user {eve.id}", how_long=f"until {until} (or /unblock)"
    ) + ModerationReplies.reason.format(reason="spam links")
    refused = await app.discord_command(
        world.eves_lobby, eve, "unblock", platform="discord", user_id=str(eve.id)
    )
    assert refused == DiscordReplies.moderators_only
    assert await app.relay.is_blocked("discord", str(eve.id))

    line = (
        f"🚫 maya (discord:{maya.id}) blocked discord user {eve.id} until {until} (or /unblock) in discord "
        f"server {world.general.guild_id}, channel {world.general.id}. Reason: spam links"
    )
    logged = await fake.wait_until(lambda: fake.bot_messages(world.mod_log), what="the desk log line")
    assert logged[-1].content == escape_markdown(line)
    telegram = world.telegram
    await telegram.wait_for(lambda: bool(telegram.bot_messages(world.tg_log)), what="the Telegram log line")
    assert telegram.bot_messages(world.tg_log)[-1].text == line

    await app.discord_command(world.general, maya, "unblock", platform="discord", user_id=str(eve.id))
    unblocked = await fake.wait_until(
        lambda: [m for m in fake.bot_messages(world.mod_log) if m.content.startswith("✅")],
        what="unblock log",
    )
    assert f"maya (discord:{maya.id}) unblocked discord user {eve.id}" in unblocked[0].content
    assert "reason: spam links" in unblocked[0].content


async def test_a_timed_block_runs_out_and_its_reason_never_reaches_the_user(
    world: World, app: App, ignored: Ignored
) -> None:
    fake, alice = world.discord, world.alice
    answer = await app.telegram_command(world.tg_mods, world.sam, f"/block discord {alice.id} 30m spam links")
    assert answer.startswith(f"Blocked discord user {alice.id} until ")
    assert answer.endswith(" (or /unblock): everything they send is ignored. Reason: spam links")
    again = await app.telegram_command(world.tg_mods, world.sam, f"/block discord {alice.id}")
    assert " Reason: spam links. " in again  # moderators see why
    dm = fake.dm_channel(alice)
    await fake.user_says(dm, alice, "hello?")
    await ignored("discord", str(alice.id))
    app.clock.advance(timedelta(minutes=31))
    await fake.user_says(dm, alice, "hello again")
    await fake.wait_for_texts(dm, ["scripted: hello again (#1)"])
    assert not any("spam" in m.content for m in fake.bot_messages(dm))


async def test_a_bad_duration_is_explained(world: World, app: App) -> None:
    answer = await app.telegram_command(world.tg_mods, world.sam, f"/block discord {world.alice.id} 99999w")
    assert answer == ModerationReplies.bad_duration.format(word="99999w")
    answer = await app.discord_command(
        world.general, world.maya, "block", platform="telegram", user_id="5", duration="soon"
    )
    assert answer == ModerationReplies.bad_duration.format(word="soon")
    assert not await app.relay.is_blocked("discord", str(world.alice.id))
    assert not await app.relay.is_blocked("telegram", "5")


async def test_a_telegram_desk_moderator_blocks_only_from_the_desk_or_a_private_chat(
    world: World, app: App
) -> None:
    sam, uma, lobby = world.sam, world.uma, world.lobby
    greeting = world.telegram.say(lobby, uma, "hello everyone")
    refused = await app.telegram_command(lobby, sam, "/block 1h", reply_to=greeting)
    assert refused == TelegramReplies.moderators_only
    refused = await app.telegram_command(lobby, sam, f"/block telegram {uma.id}")
    assert refused == TelegramReplies.moderators_only
    assert not await app.relay.is_blocked("telegram", str(uma.id))
    answer = await app.telegram_command(world.telegram.private_chat(sam), sam, f"/block telegram {uma.id}")
    assert answer == blocked(f"telegram user {uma.id}")


async def test_people_posting_as_a_channel_or_as_anonymous_admins_are_kept_apart(
    world: World, app: App, ignored: Ignored
) -> None:
    telegram, lobby = world.telegram, world.lobby
    news = telegram.channel("News")
    mention = f"@{telegram.bot.username}"
    telegram.say(lobby, world.uma, f"{mention} from the channel", as_chat=news)
    telegram.say(lobby, world.mallory, f"{mention} anonymously", as_chat=lobby)
    await telegram.wait_for(
        lambda: (
            {m.text for m in telegram.bot_messages(lobby)}
            >= {"scripted: from the channel (#1)", "scripted: anonymously (#1)"}
        ),
        what="both answered, each in its own conversation",
    )
    async with app.db() as session:
        users = {(u.external_id, u.display_name) for u in await session.scalars(select(User))}
    assert users == {(str(news.id), "News"), (str(lobby.id), "Lobby")}

    answer = await app.telegram_command(
        lobby, world.ada, "/block", reply_to=telegram.say(lobby, world.uma, "x", as_chat=news)
    )
    assert answer == blocked(f"News (telegram user {news.id})")
    telegram.say(lobby, world.uma, f"{mention} still here", as_chat=news)
    await ignored("telegram", str(news.id))
    telegram.say(lobby, world.mallory, f"{mention} and me?", as_chat=lobby)
    await telegram.wait_for(
        lambda: any(m.text == "scripted: and me? (#2)" for m in telegram.bot_messages(lobby)),
        what="the anonymous admin is still answered",
    )


async def test_a_blocked_user_leaves_no_public_trace_on_discord(
    world: World, app: App, ignored: Ignored
) -> None:
    """No thread opened for a mention, no public "thinking…" or echo of /ask, no handoff from /human."""
    fake, alice, general = world.discord, world.alice, world.general
    await app.relay.blocks.block("discord", str(alice.id), by="test")
    channels_before = set(fake.channels)
    await fake.user_says(general, alice, f"<@{fake.bot.id}> hello")
    await ignored("discord", str(alice.id))
    assert set(fake.channels) == channels_before  # no thread
    for command, options in (("ask", {"question": "hello?"}), ("human", {}), ("reset", {})):
        answer = await _private_answer(fake, await fake.slash(general, alice, command, **options))
        assert answer == DiscordReplies.not_here
    assert fake.bot_messages(general) == []
    async with app.db() as session:
        assert list(await session.scalars(select(Handoff))) == []
    assert app.agent.turns == []


# -- helpers ---------------------------------------------------------------------------------------------


class Clock:
    """Real time, which a test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


def blocked(who: str) -> str:
    return ModerationReplies.blocked.format(who=who, how_long="until someone uses /unblock")


async def _private_answer(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    answer: FakeMessage = await fake.answer(interaction)
    assert answer.flags & EPHEMERAL, answer.content
    return answer.content


async def _slash_naming(
    fake: FakeDiscord, channel: FakeChannel, by: DiscordUser, name: str, user: DiscordUser
) -> FakeInteraction:
    """A slash command whose `user` option names `user`, with the resolved data Discord sends along (the
    fake's `slash` only builds string, integer and boolean options)."""
    command_id, _ = fake._command(name, channel.guild_id)
    data = {
        "id": str(command_id),
        "name": name,
        "type": 1,
        "options": [{"name": "user", "type": 6, "value": str(user.id)}],
        "resolved": {"users": {str(user.id): user.payload()}},
    }
    return await fake._interact(2, channel, by, data)


async def _until(predicate: Callable[[], bool], *, within: float = 5.0, what: str) -> None:
    """Poll a condition nothing signals (a log record), until it holds or `within` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what!r}")
        await asyncio.sleep(0.01)


async def test_a_follow_up_in_a_new_thread_waits_for_the_first_reply(world: World, app: App) -> None:
    """With `threads = true` the first turn runs in the thread's conversation, so a follow-up written
    there while it streams waits its turn instead of running beside it."""
    fake, alice, general = world.discord, world.alice, world.general
    first = app.agent.feed("tell me")
    await fake.user_says(general, alice, f"<@{fake.bot.id}> tell me")
    thread = await fake.wait_until(
        lambda: next((c for c in fake.channels.values() if c.parent_id == general.id), None), what="a thread"
    )
    await first.put(TextDelta("Once upon"))
    await fake.wait_until(lambda: fake.bot_messages(thread), what="the first words")
    await fake.user_says(thread, alice, "and then?")
    await _until(lambda: len(app.agent.turns) == 1 and first.empty(), what="the follow-up waiting")
    assert [turn.text for turn in app.agent.turns] == ["tell me"]  # not running beside the first
    await first.put(TextDelta(" a time."))
    await first.put(None)
    await fake.wait_for_texts(thread, ["Once upon a time.", "scripted: and then? (#2)"])


async def test_a_moderator_changes_a_blocks_terms_and_an_admin_in_a_group_never_shows_the_reason(
    world: World, app: App
) -> None:
    uma, lobby = world.uma, world.lobby
    greeting = world.telegram.say(lobby, uma, "hello everyone")
    answer = await app.telegram_command(lobby, world.ada, "/block 2h spam links", reply_to=greeting)
    assert answer.startswith(f"Blocked Uma (telegram user {uma.id}) until ")
    assert "spam" not in answer  # Uma can read this group
    again = await app.telegram_command(lobby, world.ada, "/block", reply_to=greeting)
    assert "already blocked" in again and "spam" not in again
    private = world.telegram.private_chat(world.sam)
    changed = await app.telegram_command(private, world.sam, f"/block telegram {uma.id} 1w")
    assert changed.startswith(f"Changed the block of telegram user {uma.id}: now until ")
    block = await app.relay.blocks.active("telegram", str(uma.id))
    assert block is not None and block.until is not None
    assert block.until - app.clock() > timedelta(days=6)
    await world.telegram.wait_for(
        lambda: any("changed the block of" in m.text for m in world.telegram.bot_messages(world.tg_log)),
        what="the change in the desk log",
    )


async def test_blocked_users_get_no_start_text(world: World, app: App, ignored: Ignored) -> None:
    mallory, lobby = world.mallory, world.lobby
    await app.relay.blocks.block("telegram", str(mallory.id), by="test")
    world.telegram.say(lobby, mallory, "/start")
    await ignored("telegram", str(mallory.id))
    answer = await app.telegram_command(lobby, world.uma, "/start")
    assert answer == app.telegram.config.start_text  # Uma's, and only hers
    assert len([m for m in world.telegram.bot_messages(lobby) if m.text == answer]) == 1
