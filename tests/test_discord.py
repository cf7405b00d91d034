"""The Discord bridge end to end: the real discord.py client against the fake Discord on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import (
    AgentEvent,
    AgentUnavailable,
    BaseAgent,
    Button,
    Media,
    Message,
    TextDelta,
    Turn,
    TurnEnd,
)
from agents.http import agent_http_client
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from bridges.discord.bridge import DiscordBridge
from bridges.discord.cog import Replies
from bridges.relay import Notices, Relay
from bridges.render import IN_PROGRESS
from bridges.split import split_text, utf16_length
from fakes.discord import MANAGE_GUILD, FakeChannel, FakeDiscord, FakeGuild, FakeMessage, FakeUser
from fakes.http import Hang
from fakes.openai import FakeOpenAI, content
from models import AgentBinding, Role, TranscriptEntry
from tests.agent_support import relay_policy
from tests.discord_support import discord_config
from tests.polling import eventually, has, holds, queued_text, transcript_texts

pytestmark = pytest.mark.e2e

WINDOW = 0.25
"""The fake's per-channel message bucket window, shortened from Discord's 5 s to keep tests quick; the
bridge's budget is configured with the same numbers, as an operator would with Discord's."""
NO_PINGS = {"parse": []}

Step = TextDelta | Message | asyncio.Event | Exception


class ScriptedAgent(BaseAgent):
    """Echoes "<name>: <text>" in pieces, or plays a script: events are yielded, an Event is awaited
    (so a test can pace the stream), an exception is raised mid-stream."""

    def __init__(self, name: str = "scripted") -> None:
        super().__init__(name)
        self.turns: list[Turn] = []
        self.script: dict[str, list[Step]] = {}

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        self.turns.append(turn)
        count = int(turn.provider_state.get("count", 0)) + 1
        if turn.button is not None:
            steps: list[Step] = [TextDelta(f"pressed {turn.button.label}: {turn.button.payload}")]
        else:
            steps = self.script.get(turn.text) or [TextDelta(f"{self.name}: "), TextDelta(turn.text)]
        for step in steps:
            if isinstance(step, asyncio.Event):
                await step.wait()
            elif isinstance(step, Exception):
                raise step
            else:
                yield step
        yield TurnEnd({"count": count})


@dataclass
class World:
    fake: FakeDiscord
    guild: FakeGuild
    channel: FakeChannel
    alice: FakeUser
    admin: FakeUser

    def dm(self, user: FakeUser | None = None) -> FakeChannel:
        return self.fake.dm_channel(user or self.alice)


@pytest.fixture
def fake_options() -> dict[str, Any]:
    """Overridden by a test's parametrization to configure the fake differently."""
    return {}


@pytest.fixture
async def world(fake_options: dict[str, Any]) -> AsyncIterator[World]:
    async with FakeDiscord(message_window=WINDOW, **fake_options) as fake:
        owner = fake.add_user("owner")
        guild = fake.add_guild("Test server", owner)
        admins = fake.add_role(guild, "Admins", MANAGE_GUILD)
        admin, alice = fake.add_user("admin"), fake.add_user("alice")
        fake.add_member(guild, admin, (admins,))
        fake.add_member(guild, alice)
        yield World(fake, guild, fake.add_text_channel(guild, "general"), alice, admin)


@pytest.fixture
def agent() -> ScriptedAgent:
    return ScriptedAgent()


@pytest.fixture
def relay(db: async_sessionmaker[AsyncSession], agent: ScriptedAgent) -> Relay:
    return Relay(db, {"scripted": agent, "other": ScriptedAgent("other")}, relay_policy("scripted"))


StartBridge = Callable[..., Awaitable[DiscordBridge]]


@pytest.fixture
async def start_bridge(world: World, relay: Relay) -> AsyncIterator[StartBridge]:
    started: list[DiscordBridge] = []

    async def start(**overrides: Any) -> DiscordBridge:
        bridge = DiscordBridge(discord_config(world.fake, **overrides), relay)
        await bridge.start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        await bridge.close(grace=1.0)


def assert_never_pinged(messages: list[FakeMessage]) -> None:
    for message in messages:
        assert message.allowed_mentions and all(a == NO_PINGS for a in message.allowed_mentions), message.id
        assert not message.pinged


async def test_dm_reply_streams_with_edits_and_ends_on_exact_text(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    await start_bridge()
    thinking, *gates = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
    agent.script["hello"] = [
        thinking,
        TextDelta("Hello"),
        gates[0],
        TextDelta(", **world**"),
        gates[1],
        TextDelta("! How can I help?"),
    ]
    dm = world.dm()
    await world.fake.user_says(dm, world.alice, "hello")
    await world.fake.wait_until(lambda: world.fake.typing.get(dm.id), what="a typing indicator")
    thinking.set()
    await world.fake.wait_for_texts(dm, ["Hello ▌"])
    gates[0].set()
    await world.fake.wait_for_texts(dm, ["Hello, **world** ▌"])
    gates[1].set()
    (reply,) = await world.fake.wait_for_texts(dm, ["Hello, **world**! How can I help?"])
    # While streaming the message ends in the in-progress marker; the final edit leaves the exact text.
    assert reply.versions == ["Hello ▌", "Hello, **world** ▌", "Hello, **world**! How can I help?"]
    assert reply.reference is None  # a DM needs no reply reference
    assert_never_pinged([reply])
    assert world.fake.rate_limited == 0
    assert agent.turns[0].platform == "discord" and agent.turns[0].user_id == str(world.alice.id)


async def test_guild_mentions_and_replies_trigger_and_nothing_pings(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    bot = await start_bridge()
    fake, channel = world.fake, world.channel
    await fake.user_says(channel, world.alice, "just chatting, not to the bot")
    asked = await fake.user_says(
        channel, world.alice, f"<@{fake.bot.id}> tell @everyone and <@&{world.guild.id}>"
    )
    (reply,) = await fake.wait_for_texts(channel, [f"scripted: tell @everyone and <@&{world.guild.id}>"])
    assert reply.reference is asked  # answers the asker's message, without pinging them
    assert [turn.text for turn in agent.turns] == [f"tell @everyone and <@&{world.guild.id}>"]

    await fake.user_says(channel, world.alice, "and a follow-up", reply_to=reply)
    await fake.wait_for_texts(channel, [reply.content, "scripted: and a follow-up"])
    assert_never_pinged(fake.bot_messages(channel))
    assert fake.identifies == [bot.bot.intents.value]
    assert fake.rate_limited == 0


async def test_denied_channel_and_role_are_ignored(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    fake = world.fake
    muted = fake.add_role(world.guild, "Muted")
    mallory = fake.add_user("mallory")
    fake.add_member(world.guild, mallory, (muted,))
    quiet = fake.add_text_channel(world.guild, "quiet")
    await start_bridge(denied_channels=(quiet.id,), denied_roles=(muted,))
    await fake.user_says(quiet, world.alice, f"<@{fake.bot.id}> hi from quiet")
    await fake.user_says(world.channel, mallory, f"<@{fake.bot.id}> hi from mallory")
    await fake.user_says(world.channel, world.alice, f"<@{fake.bot.id}> hi")
    await fake.wait_for_texts(world.channel, ["scripted: hi"])
    assert [turn.text for turn in agent.turns] == ["hi"]
    assert fake.bot_messages(quiet) == []


async def test_slash_commands(
    world: World, start_bridge: StartBridge, db: async_sessionmaker[AsyncSession]
) -> None:
    await start_bridge()
    fake, channel = world.fake, world.channel
    registered = {c["name"]: c for c in fake.commands["global"]}
    assert set(registered) == {"ask", "reset", "human", "stop", "agent", "block", "unblock", "usage"}
    assert int(registered["agent"]["default_member_permissions"]) == MANAGE_GUILD
    ask_in = registered["ask"]["description_localizations"]  # each client sees its own language
    assert (ask_in["de"], ask_in["es-ES"], ask_in["ru"]) == (
        "Frag den Assistenten etwas",
        "Pregúntale algo al asistente",
        "Спросить ассистента",
    )
    assert "en-US" not in ask_in and registered["ask"]["options"][0]["description_localizations"]["de"]

    ask = await fake.slash(channel, world.alice, "ask", question="what is up?")
    assert (await fake.wait_for_callback(ask))["type"] == 5  # "thinking" first
    await fake.wait_for_texts(channel, ["scripted: what is up?"])
    assert fake.messages[ask.original_message_id or 0].content == "scripted: what is up?"

    refused = await fake.slash(channel, world.alice, "agent", name="other")
    callback = await fake.wait_for_callback(refused)
    assert callback["data"]["content"] == Replies.admins_only and callback["data"]["flags"] == 64

    bound = await fake.slash(channel, world.admin, "agent", name="other")
    await fake.wait_for_callback(bound)
    async with db() as session:
        binding = await session.scalar(select(AgentBinding))
    assert binding is not None and binding.scope == "discord_channel"
    assert (binding.scope_id, binding.agent_name) == (str(channel.id), "other")

    await fake.slash(channel, world.alice, "reset")
    await fake.wait_for_texts(channel, ["scripted: what is up?", Notices.reset])
    await fake.user_says(channel, world.alice, f"<@{fake.bot.id}> who are you")
    await fake.wait_for_texts(channel, ["scripted: what is up?", Notices.reset, "other: who are you"])
    human = await fake.slash(channel, world.alice, "human")
    shown = await fake.wait_for_texts(
        channel, ["scripted: what is up?", Notices.reset, "other: who are you", Notices.handoff_requested]
    )
    assert shown[-1].interaction_id == human.id
    assert_never_pinged(shown)


async def test_button_press_round_trip_survives_restart(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    choices = [Button(f"Choice {n}", {"intent": "pick", "n": n, "blob": "x" * 300}) for n in range(29)]
    link = Button("Docs", url="https://example.com/docs")
    agent.script["menu"] = [Message("Pick one", buttons=(link, *choices))]
    bridge = await start_bridge()
    fake, dm = world.fake, world.dm()
    await fake.user_says(dm, world.alice, "menu")
    (menu,) = await fake.wait_for_texts(dm, ["Pick one"])
    await fake.wait_until(lambda: menu.components, what="buttons on the menu")
    assert len(menu.components) <= 5 and all(len(row["components"]) <= 5 for row in menu.components)
    buttons = menu.buttons()
    assert len(buttons) == 25 and buttons[0]["url"] == link.url
    assert all(len(b["custom_id"]) <= 100 for b in buttons[1:])

    press = await fake.press(menu, buttons[1]["custom_id"], world.alice)
    assert (await fake.wait_for_callback(press))["type"] == 6
    first = f"pressed Choice 0: {choices[0].payload}"
    await fake.wait_for_texts(dm, ["Pick one", first])

    await bridge.close(grace=1.0)  # a restart: a new client, a new in-memory cache, the same database
    await start_bridge()
    await fake.press(menu, buttons[3]["custom_id"], world.alice)
    await fake.wait_for_texts(dm, ["Pick one", first, f"pressed Choice 2: {choices[2].payload}"])
    assert agent.turns[-1].button == choices[2]

    forged = menu.buttons()[1]["custom_id"][:-4] + "AAAA"
    menu.components[0]["components"][1]["custom_id"] = forged
    expired = await fake.press(menu, forged, world.alice)
    callback = await fake.wait_for_callback(expired)
    assert callback["data"]["content"] == Replies.button_expired


async def test_long_reply_is_split_at_paragraphs_below_2000(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    paragraphs = [f"Paragraph {n}. " + "word " * 73 + "end." for n in range(13)]
    text = "\n\n".join(paragraphs)
    assert 4900 < len(text) < 5100
    agent.script["long"] = [TextDelta(text[i : i + 250]) for i in range(0, len(text), 250)]
    await start_bridge()
    dm = world.dm()
    await world.fake.user_says(dm, world.alice, "long")
    done = await world.fake.wait_until(
        lambda: (m := world.fake.bot_messages(dm)) and "\n\n".join(x.content for x in m) == text and m,
        what="the whole reply",
    )
    assert len(done) == 3
    assert all(len(message.content) < 2000 for message in done)
    assert all(message.content.endswith("end.") for message in done)


async def test_a_code_block_split_across_messages_stays_a_code_block_in_each(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    code = "".join(f"    total += values[{n}]  # step {n}\n" for n in range(120))
    text = f"Try this:\n```python\ndef total(values):\n    total = 0\n{code}    return total\n```\nDone."
    assert len(text) > 4000
    agent.script["code"] = [TextDelta(text[i : i + 500]) for i in range(0, len(text), 500)]
    await start_bridge()
    dm = world.dm()
    await world.fake.user_says(dm, world.alice, "code")
    done = await world.fake.wait_until(
        lambda: (m := world.fake.bot_messages(dm)) and m[-1].content.endswith("Done.") and m,
        what="the whole reply",
    )
    assert len(done) == 3
    assert all(len(message.content) <= 2000 for message in done)
    assert done[0].content.endswith("\n```") and done[1].content.endswith("\n```")
    assert done[1].content.startswith("```python\n") and done[2].content.startswith("```python\n")
    assert all(message.content.count("```") == 2 for message in done)
    unfenced = "".join(m.content for m in done).replace("``````python\n", "")
    assert unfenced == text


async def test_an_edit_before_its_turn_replaces_the_queued_text_and_a_later_one_is_recorded(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge, db: async_sessionmaker[AsyncSession]
) -> None:
    busy = asyncio.Event()
    agent.script["first"] = [TextDelta("thinking"), busy, TextDelta(" done")]
    await start_bridge()
    dm = world.dm()
    await world.fake.user_says(dm, world.alice, "first")
    await world.fake.wait_for_texts(dm, [f"thinking {IN_PROGRESS}"])  # still being written
    queued = await world.fake.user_says(dm, world.alice, "secnod")
    await eventually(lambda: holds(queued_text(db, queued.id), "secnod"), what="the typo queued")
    await world.fake.user_edits(queued, "second")
    await eventually(lambda: holds(queued_text(db, queued.id), "second"), what="the queued text replaced")
    busy.set()
    await world.fake.wait_for_texts(dm, ["thinking done", "scripted: second"])
    assert [turn.text for turn in agent.turns] == ["first", "second"]

    await world.fake.user_edits(queued, "second, really")  # answered already: only recorded
    note = "edited a message: second, really"
    await eventually(lambda: has(transcript_texts(db), note), what="the late edit in the transcript")
    assert len(agent.turns) == 2


@pytest.mark.slow
async def test_twenty_concurrent_replies_in_one_channel_cause_no_429(
    world: World, start_bridge: StartBridge
) -> None:
    fake = world.fake
    users = [fake.add_user(f"user{n}") for n in range(20)]
    for user in users:
        fake.add_member(world.guild, user)
    await start_bridge()
    started = time.monotonic()
    for user in users:
        await fake.user_says(world.channel, user, f"<@{fake.bot.id}> question from {user.username}")
    expected = {f"scripted: question from {user.username}" for user in users}
    await fake.wait_until(
        lambda: {m.content for m in fake.bot_messages(world.channel)} == expected,
        within=30.0,
        what="twenty replies",
    )
    elapsed = time.monotonic() - started
    assert fake.rate_limited == 0, fake.limits.refused
    posts = fake.count("POST /channels/{channel_id}/messages")
    assert posts == 20
    # the channel budget paces requests near Discord's bucket rate instead of bursting into 429s
    requests = posts + fake.count("PATCH /channels/{channel_id}/messages/{message_id}")
    assert elapsed >= (requests - 5) * WINDOW / 5


async def test_provider_error_mid_stream_ends_in_a_notice_and_keeps_the_session(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    outage = AgentUnavailable("upstream 503")
    agent.script["boom"] = [TextDelta("Let me check"), outage]
    await start_bridge()
    dm = world.dm()
    await world.fake.user_says(dm, world.alice, "boom")
    notice = f"Let me check\n\n⚠️ {outage.user_message}"
    await world.fake.wait_for_texts(dm, [notice])
    await world.fake.user_says(dm, world.alice, "still there?")
    await world.fake.wait_for_texts(dm, [notice, "scripted: still there?"])
    assert [turn.text for turn in agent.turns] == ["boom", "still there?"]


async def test_hostile_input_is_shortened_and_never_pings(world: World, start_bridge: StartBridge) -> None:
    await start_bridge()
    dm = world.dm()
    hostile = ("@everyone ``` <@&1> **x** ||spoiler|| " * 300)[:10_000]
    await world.fake.user_says(dm, world.alice, hostile)
    echoed = [c.strip() for c in split_text("scripted: " + hostile[:4000], 2000, utf16_length)]
    notice = Notices.input_shortened.format(limit=4000)
    messages = await world.fake.wait_for_texts(dm, [notice, *echoed])
    assert len(messages) == 4 and all(len(m.content) <= 2000 for m in messages)
    assert_never_pinged(messages)


@pytest.mark.parametrize("fake_options", [{"global_limit": 10}])
@pytest.mark.parametrize(("bot_budget", "expect_429"), [(10, False), (1000, True)])
async def test_bot_wide_budget_keeps_many_channels_under_the_global_limit(
    world: World, start_bridge: StartBridge, bot_budget: int, expect_429: bool
) -> None:
    """discord.py paces each bucket it has seen, but nothing paces the bot as a whole: that is the
    shared bot budget's job. The control case (a budget wider than Discord's limit) gets real 429s."""
    fake = world.fake
    channels = [fake.add_text_channel(world.guild, f"room-{n}") for n in range(8)]
    users = [fake.add_user(f"user{n}") for n in range(8)]
    await start_bridge(global_requests_per_second=bot_budget)
    for channel, user in zip(channels, users, strict=True):
        await fake.user_says(channel, user, f"<@{fake.bot.id}> hi in {channel.name}")
    for channel in channels:
        await fake.wait_for_texts(channel, [f"scripted: hi in {channel.name}"])
    assert (fake.rate_limited > 0) is expect_429, fake.limits.refused


async def test_threads_media_and_follow_ups_in_the_thread(
    world: World, agent: ScriptedAgent, start_bridge: StartBridge
) -> None:
    agent.script["picture"] = [
        Message("Here it is", media=(Media("https://example.com/cat.png", "image", "A cat"),))
    ]
    await start_bridge(threads=True, message_content_intent=True)
    fake, channel = world.fake, world.channel
    await fake.user_says(channel, world.alice, f"<@{fake.bot.id}> picture")
    thread = await fake.wait_until(
        lambda: next((c for c in fake.channels.values() if c.parent_id == channel.id), None), what="a thread"
    )
    assert thread.name == "Chat with alice"
    shown = await fake.wait_for_texts(thread, ["Here it is", ""])
    assert shown[1].embeds[0]["image"]["url"] == "https://example.com/cat.png"
    await fake.user_says(thread, world.alice, "and without a mention")  # the bot's own thread
    await fake.wait_for_texts(thread, ["Here it is", "", "scripted: and without a mention"])
    assert fake.bot_messages(channel) == []
    assert fake.identifies[-1] & (1 << 15)  # asked for the Message Content intent


async def test_a_runaway_reply_is_cut_at_the_cap_and_the_provider_is_hung_up_on(
    world: World, db: async_sessionmaker[AsyncSession]
) -> None:
    """An OpenAI-compatible provider streams far past `max_reply_chars`: the user sees the reply up to the
    last sentence before the cap, then a notice; the provider sees the client hang up mid-stream; the
    transcript keeps what was shown."""
    sentence = "This answer keeps going and going. "  # 35 characters; 3,000 fit 85 sentences and a bit
    endless = sentence * 400
    streamed = [content(endless[i : i + 4]) for i in range(0, 2996, 4)]
    # The rest comes in one piece, so the fake is past writing, and waiting, when the client hangs up.
    async with FakeOpenAI(api_key=None) as provider, agent_http_client() as http:
        provider.script(*streamed, content(endless[2996:]), Hang())
        gpt = OpenAICompatAgent(
            "gpt", OpenAICompatSettings(base_url=provider.url, model=provider.model), http
        )
        policy = replace(relay_policy("gpt"), max_reply_chars=3000)
        bridge = DiscordBridge(discord_config(world.fake), Relay(db, {"gpt": gpt}, policy))
        await bridge.start()
        try:
            dm = world.dm()
            await world.fake.user_says(dm, world.alice, "tell me everything")
            shown = [chunk.strip() for chunk in split_text(sentence * 85, 2000, utf16_length)]
            await world.fake.wait_for_texts(dm, [*shown, Notices.reply_cut])
            assert provider.disconnected.is_set()  # hung up on when the cap was passed, not once all was said
        finally:
            await bridge.close(grace=1.0)
    async with db() as session:
        said = await session.scalar(select(TranscriptEntry.text).where(TranscriptEntry.role == Role.AGENT))
    assert said == (sentence * 85).strip()
