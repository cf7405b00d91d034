"""Trigger rules on Discord end to end: the real discord.py client against the fake Discord, each kind of
trigger, ignore rules, random replies (seeded) and forum channels, where a new post is a thread whose
starter message is the post."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.discord.bridge import DiscordBridge
from bridges.relay import Relay
from bridges.triggers import TriggerPolicy, TriggerRule
from fakes.discord import FakeChannel, FakeDiscord, FakeGuild, FakeUser
from fakes.discord.state import snowflake
from tests.agent_support import relay_policy
from tests.discord_support import discord_config
from tests.test_discord import WINDOW, ScriptedAgent

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
"""What the bridge answers does not depend on the database."""


@dataclass
class World:
    fake: FakeDiscord
    guild: FakeGuild
    channel: FakeChannel
    alice: FakeUser
    staff: FakeUser
    staff_role: int
    agent: ScriptedAgent
    db: async_sessionmaker[AsyncSession]

    def channel_rule(self, channel: FakeChannel | None = None, **keys: Any) -> TriggerRule:
        return TriggerRule(scope="discord_channel", id=str((channel or self.channel).id), **keys)

    def said(self) -> list[str]:
        return [turn.text for turn in self.agent.turns]


Start = Callable[..., Awaitable[DiscordBridge]]


@pytest.fixture
async def world(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[World]:
    async with FakeDiscord(message_window=WINDOW) as fake:
        owner, alice, staff = fake.add_user("owner"), fake.add_user("alice"), fake.add_user("staff")
        guild = fake.add_guild("Test server", owner)
        staff_role = fake.add_role(guild, "Staff")
        fake.add_member(guild, alice)
        fake.add_member(guild, staff, (staff_role,))
        channel = fake.add_text_channel(guild, "general")
        yield World(fake, guild, channel, alice, staff, staff_role, ScriptedAgent(), db)


@pytest.fixture
async def start(world: World) -> AsyncIterator[Start]:
    started: list[DiscordBridge] = []

    async def start(*rules: TriggerRule, chance: Callable[[], float] = random.random) -> DiscordBridge:
        triggers = TriggerPolicy(rules, chance=chance)
        policy = replace(relay_policy("scripted"), triggers=triggers, user_burst=50)
        relay = Relay(world.db, {"scripted": world.agent}, policy)
        bridge = DiscordBridge(discord_config(world.fake, message_content_intent=True), relay)
        await bridge.start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        await bridge.close(grace=1.0)


async def test_keywords_prefixes_and_a_pattern_trigger_and_mentions_still_work(
    world: World, start: Start
) -> None:
    await start(world.channel_rule(keywords=("refund",), prefixes=("?ask",), pattern=r"(?i)order #\d+"))
    fake, channel, alice = world.fake, world.channel, world.alice
    await fake.user_says(channel, alice, "refunds are a word, but not the keyword")
    await fake.user_says(channel, alice, "I want a Refund")
    await fake.wait_for_texts(channel, ["scripted: I want a Refund"])
    await fake.user_says(channel, alice, "?ASK what are the hours")
    await fake.user_says(channel, alice, "where is ORDER #123")
    await fake.user_says(channel, alice, f"<@{fake.bot.id}> hello")
    await fake.wait_for_texts(
        channel,
        [
            "scripted: I want a Refund",
            "scripted: what are the hours",
            "scripted: where is ORDER #123",
            "scripted: hello",
        ],
    )
    assert world.said() == ["I want a Refund", "what are the hours", "where is ORDER #123", "hello"]


async def test_an_auto_answer_channel_answers_all_but_what_its_ignore_rules_name(
    world: World, start: Start
) -> None:
    fake, channel, alice = world.fake, world.channel, world.alice
    elsewhere = fake.add_text_channel(world.guild, "elsewhere")
    other_bot = FakeUser(snowflake(), "otherbot", bot=True)
    fake.users[other_bot.id] = other_bot
    fake.add_member(world.guild, other_bot)
    rule = world.channel_rule(mode="all", ignore_prefixes=("//", "!"), ignore_roles=(str(world.staff_role),))
    await start(rule)
    await fake.user_says(elsewhere, alice, "no rule here")
    await fake.user_says(channel, alice, "// a note to myself")
    await fake.user_says(channel, alice, "!play a song")
    await fake.user_says(channel, world.staff, "staff chatting")
    await fake.user_says(channel, other_bot, f"<@{fake.bot.id}> a bot asks")
    await fake.user_says(channel, alice, "how do I reset my password?")
    await fake.wait_for_texts(channel, ["scripted: how do I reset my password?"])
    await fake.user_says(channel, world.staff, f"<@{fake.bot.id}> staff asks on purpose")
    await fake.wait_for_texts(
        channel, ["scripted: how do I reset my password?", "scripted: staff asks on purpose"]
    )
    assert world.said() == ["how do I reset my password?", "staff asks on purpose"]
    assert fake.bot_messages(elsewhere) == []


async def test_a_forum_answers_each_new_post_in_its_thread_and_follow_ups_only_when_triggered(
    world: World, start: Start
) -> None:
    fake, alice = world.fake, world.alice
    forum = fake.add_forum_channel(world.guild, "help")
    quiet_forum = fake.add_forum_channel(world.guild, "showcase")
    await start(world.channel_rule(forum, mode="new_posts"))
    await fake.user_posts(quiet_forum, alice, "My build", "look at this")
    starter = await fake.user_posts(forum, alice, "Login broken", "I cannot log in")
    thread = fake.channels[starter.channel_id]
    assert thread.id == starter.id and thread.parent_id == forum.id
    (reply,) = await fake.wait_for_texts(thread.id, ["scripted: I cannot log in"])
    assert reply.reference is starter
    await fake.user_says(thread, alice, "thanks, trying that now")
    await fake.user_says(thread, alice, "still broken", reply_to=reply)
    await fake.wait_for_texts(thread.id, ["scripted: I cannot log in", "scripted: still broken"])
    assert world.said() == ["I cannot log in", "still broken"]
    quiet_thread = next(c for c in fake.channels.values() if c.parent_id == quiet_forum.id)
    assert fake.bot_messages(quiet_thread.id) == []


async def test_random_replies_pick_the_messages_the_seeded_chance_picks(world: World, start: Start) -> None:
    seed, rate, count = 7, 0.3, 20
    await start(world.channel_rule(random_reply_rate=rate), chance=random.Random(seed).random)
    twin = random.Random(seed)
    expected = [f"chatter {n}" for n in range(count) if twin.random() < rate]
    assert 0 < len(expected) < count
    for n in range(count):
        await world.fake.user_says(world.channel, world.alice, f"chatter {n}")
    await world.fake.user_says(world.channel, world.alice, f"<@{world.fake.bot.id}> end")
    await world.fake.wait_until(lambda: "end" in world.said(), what="the last, addressed message")
    await world.fake.wait_until(lambda: len(world.fake.bot_messages(world.channel)) == len(expected) + 1)
    assert sorted(world.said()) == sorted([*expected, "end"])


async def test_where_bots_are_answered_the_bot_still_never_answers_itself(world: World, start: Start) -> None:
    fake, channel = world.fake, world.channel
    other_bot = FakeUser(snowflake(), "otherbot", bot=True)
    fake.users[other_bot.id] = other_bot
    fake.add_member(world.guild, other_bot)
    await start(world.channel_rule(mode="all", ignore_bots=False))
    await fake.user_says(channel, other_bot, "a bot says hi")
    await fake.wait_until(lambda: world.said() == ["a bot says hi"], what="the other bot answered")
    await fake.wait_for_texts(channel, ["scripted: a bot says hi"])
    await fake.user_says(channel, world.alice, "and a person")
    await fake.wait_until(lambda: "and a person" in world.said(), what="the person answered")
    assert world.said() == ["a bot says hi", "and a person"]  # not its own "scripted: a bot says hi"
