"""Stop and Regenerate on Discord, end to end: discord.py against the fake Discord, a real
OpenAI-compatible agent (httpx) against the fake provider, and the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Agent
from agents.http import agent_http_client
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from bridges.controls import ControlNotices
from bridges.discord.bridge import DiscordBridge
from bridges.relay import Relay
from bridges.render import IN_PROGRESS
from fakes.discord import (
    MANAGE_GUILD,
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeUser,
)
from fakes.http import Hang
from fakes.openai import FakeOpenAI, content
from models import Role, TranscriptEntry
from tests.agent_support import relay_policy
from tests.agents.adapters import started
from tests.discord_support import discord_config
from tests.polling import eventually, holds

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
"""The controls do not depend on the database; tests/test_relay.py and the Telegram file run both."""

EPHEMERAL = 64


@dataclass
class Scene:
    fake: FakeDiscord
    guild: FakeGuild
    channel: FakeChannel
    alice: FakeUser
    bob: FakeUser
    moderator: FakeUser
    provider: FakeOpenAI
    gpt: Agent
    start: Callable[..., Awaitable[DiscordBridge]]

    def dm(self) -> FakeChannel:
        return self.fake.dm_channel(self.alice)

    def mention(self, text: str) -> str:
        return f"<@{self.fake.bot.id}> {text}"


@pytest.fixture
async def scene(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeDiscord(message_window=0.25))
        provider = await stack.enter_async_context(FakeOpenAI(api_key=None))
        http = await stack.enter_async_context(agent_http_client())
        gpt = OpenAICompatAgent(
            "gpt", OpenAICompatSettings(base_url=provider.url, model=provider.model), http
        )
        owner = fake.add_user("owner")
        guild = fake.add_guild("Test server", owner)
        moderators = fake.add_role(guild, "Moderators", MANAGE_GUILD)
        alice, bob, moderator = fake.add_user("alice"), fake.add_user("bob"), fake.add_user("mod")
        for user in (alice, bob):
            fake.add_member(guild, user)
        fake.add_member(guild, moderator, (moderators,))
        bridges: list[DiscordBridge] = []

        async def start(agent: Agent = gpt) -> DiscordBridge:
            """A new process: a new bridge and Relay (nothing in memory), the same database."""
            for running in bridges:
                await running.close(grace=0.1)
            bridge = DiscordBridge(
                discord_config(fake), Relay(db, {agent.name: agent}, relay_policy(agent.name))
            )
            await bridge.start()
            bridges.append(bridge)
            return bridge

        try:
            yield Scene(
                fake,
                guild,
                fake.add_text_channel(guild, "general"),
                alice,
                bob,
                moderator,
                provider,
                gpt,
                start,
            )
        finally:
            for bridge in bridges:
                await bridge.close(grace=0.1)
        assert provider.rejections == []


def custom_ids(message: FakeMessage) -> list[str]:
    return [str(button.get("custom_id")) for button in message.buttons()]


def stop_of(user: FakeUser) -> str:
    return f"sc:stop:{user.id}"


def regenerate_of(user: FakeUser) -> str:
    return f"sc:regen:{user.id}"


async def ephemeral_answer(fake: FakeDiscord, press: FakeInteraction) -> str:
    """What only the presser saw: the press's own answer, or a follow-up after a silent one."""
    callback = await fake.wait_for_callback(press)
    if callback["type"] == 4:
        assert callback["data"]["flags"] == EPHEMERAL
        return str(callback["data"]["content"])
    followup = await fake.wait_until(
        lambda: next(
            (m for m in fake.messages.values() if m.interaction_id == press.id and m.versions), None
        ),
        what="a follow-up to the press",
    )
    assert followup.flags & EPHEMERAL
    return followup.content


async def agent_texts(db: async_sessionmaker[AsyncSession], role: Role = Role.AGENT) -> list[str]:
    async with db() as session:
        query = select(TranscriptEntry.text).where(TranscriptEntry.role == role).order_by(TranscriptEntry.id)
        return list(await session.scalars(query))


async def streaming(scene: Scene, where: FakeChannel, text: str) -> FakeMessage:
    """The bot's latest message, once it shows `text` still streaming with its Stop button."""
    return await scene.fake.wait_until(
        lambda: (m := scene.fake.bot_messages(where)) and m[-1].content == f"{text} {IN_PROGRESS}" and m[-1],
        what=f"{text!r} streaming",
    )


async def test_stop_button_hangs_up_on_the_provider_and_keeps_the_text_marked_stopped(
    scene: Scene, db: async_sessionmaker[AsyncSession]
) -> None:
    await scene.start()
    scene.provider.script(content("Hello "), content("there"), Hang())
    dm = scene.dm()
    await scene.fake.user_says(dm, scene.alice, "hi")
    reply = await streaming(scene, dm, "Hello there")
    assert custom_ids(reply) == [stop_of(scene.alice)]
    assert not scene.provider.disconnected.is_set()

    press = await scene.fake.press(reply, stop_of(scene.alice), scene.alice)
    assert (await scene.fake.wait_for_callback(press))["type"] == 6  # acknowledged without a message
    await scene.fake.wait_for_texts(dm, ["Hello there (stopped)"])
    await asyncio.wait_for(scene.provider.disconnected.wait(), 5)  # the HTTP request was cancelled
    assert custom_ids(reply) == [regenerate_of(scene.alice)]  # Stop gone; the reply can be asked again
    await eventually(lambda: holds(agent_texts(db), ["Hello there (stopped)"]), what="the transcript")


async def test_only_the_asker_or_a_moderator_may_stop_and_stop_works_as_a_command(scene: Scene) -> None:
    await scene.start()
    fake, channel = scene.fake, scene.channel
    nothing = await fake.slash(channel, scene.alice, "stop")
    assert await ephemeral_answer(fake, nothing) == ControlNotices.nothing_to_stop

    scene.provider.script(content("Long "), content("answer"), Hang())
    await fake.user_says(channel, scene.alice, scene.mention("question"))
    reply = await streaming(scene, channel, "Long answer")
    refused = await fake.press(reply, stop_of(scene.alice), scene.bob)
    assert await ephemeral_answer(fake, refused) == ControlNotices.stop_not_yours
    stopped = await fake.press(reply, stop_of(scene.alice), scene.moderator)
    assert (await fake.wait_for_callback(stopped))["type"] == 6
    await fake.wait_for_texts(channel, ["Long answer (stopped)"])
    await asyncio.wait_for(scene.provider.disconnected.wait(), 5)

    scene.provider.disconnected.clear()
    scene.provider.script(content("Another "), content("one"), Hang())
    await fake.user_says(channel, scene.alice, scene.mention("more"))
    await streaming(scene, channel, "Another one")
    command = await fake.slash(channel, scene.alice, "stop")
    assert await ephemeral_answer(fake, command) == ControlNotices.stopped
    await fake.wait_for_texts(channel, ["Long answer (stopped)", "Another one (stopped)"])
    await asyncio.wait_for(scene.provider.disconnected.wait(), 5)


async def test_regenerate_replaces_a_split_reply_in_place_and_older_replies_are_too_late(
    scene: Scene, db: async_sessionmaker[AsyncSession]
) -> None:
    await scene.start()
    fake, dm, provider = scene.fake, scene.dm(), scene.provider
    paragraphs = [f"Paragraph {n}. " + "word " * 70 + "end." for n in range(6)]
    provider.script(*[content(paragraph + "\n\n") for paragraph in paragraphs])
    await fake.user_says(dm, scene.alice, "tell me everything")
    first, last = await fake.wait_until(
        lambda: (m := fake.bot_messages(dm)) and len(m) == 2 and m[1].content.endswith("end.") and m,
        what="a reply in two messages",
    )
    await fake.wait_until(lambda: custom_ids(last) == [regenerate_of(scene.alice)], what="Regenerate")
    assert custom_ids(first) == []  # only the last message of the reply carries it

    provider.script(content("A short "), content("answer."))
    press = await fake.press(last, regenerate_of(scene.alice), scene.alice)
    assert (await fake.wait_for_callback(press))["type"] == 6
    await fake.wait_for_texts(dm, ["A short answer.", ControlNotices.replaced_part])
    assert [m.id for m in fake.bot_messages(dm)] == [first.id, last.id]  # edited in place, nothing new
    await fake.wait_until(lambda: custom_ids(first) == [regenerate_of(scene.alice)], what="Regenerate again")
    assert custom_ids(last) == []
    assert provider.requests[1]["messages"] == provider.requests[0]["messages"]  # the same turn, asked again
    await eventually(lambda: holds(agent_texts(db), ["A short answer."]), what="the transcript")
    (record,) = await agent_texts(db, Role.SYSTEM)
    assert record == ControlNotices.regenerated.format(text="\n\n".join(paragraphs))

    await fake.user_says(dm, scene.alice, "and then?")
    await fake.wait_for_texts(dm, ["A short answer.", ControlNotices.replaced_part, "echo #2: and then?"])
    late = await fake.press(first, regenerate_of(scene.alice), scene.alice)
    assert await ephemeral_answer(fake, late) == ControlNotices.too_late
    assert len(provider.requests) == 3


async def test_only_the_asker_may_regenerate(scene: Scene) -> None:
    await scene.start()
    fake, channel = scene.fake, scene.channel
    await fake.user_says(channel, scene.alice, scene.mention("hello"))
    (reply,) = await fake.wait_for_texts(channel, ["echo #1: hello"])
    await fake.wait_until(lambda: reply.buttons(), what="Regenerate")
    press = await fake.press(reply, regenerate_of(scene.alice), scene.bob)
    assert await ephemeral_answer(fake, press) == ControlNotices.regenerate_not_yours
    assert len(scene.provider.requests) == 1


async def test_a_voiceflow_reply_can_be_stopped_but_not_regenerated(scene: Scene) -> None:
    async with started("voiceflow") as voiceflow:
        voiceflow.script_text("Hi ", "there")
        async with voiceflow.agent() as agent:
            await scene.start(agent)
            dm = scene.dm()
            await scene.fake.user_says(dm, scene.alice, "hello")
            (reply,) = await scene.fake.wait_for_texts(dm, ["Hi there\n\necho #1: hello"])  # launch, turn
            assert reply.buttons() == []


async def test_buttons_after_a_restart(scene: Scene, db: async_sessionmaker[AsyncSession]) -> None:
    """Regenerate still works on the latest reply (it is in the database); a Stop button a restart cut
    off says the reply is over."""
    await scene.start()
    fake, dm = scene.fake, scene.dm()
    await fake.user_says(dm, scene.alice, "hello")
    (reply,) = await fake.wait_for_texts(dm, ["echo #1: hello"])
    await fake.wait_until(lambda: reply.buttons(), what="Regenerate")
    await scene.start()
    scene.provider.script(content("Hello again."))
    await fake.press(reply, regenerate_of(scene.alice), scene.alice)
    await fake.wait_for_texts(dm, ["Hello again."])
    await eventually(lambda: holds(agent_texts(db), ["Hello again."]), what="the transcript")

    scene.provider.script(content("Cut "), content("off"), Hang())
    await fake.user_says(dm, scene.alice, "one more")
    cut = await streaming(scene, dm, "Cut off")
    await scene.start()  # the old process stops mid-reply; its message keeps the Stop button
    assert custom_ids(cut) == [stop_of(scene.alice)]
    stale = await fake.press(cut, stop_of(scene.alice), scene.alice)
    assert await ephemeral_answer(fake, stale) == ControlNotices.already_finished
