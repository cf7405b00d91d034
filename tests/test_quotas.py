"""Quotas on SQLite and PostgreSQL: message and token limits per user and per place, refused before the
agent with which limit and when it resets, counters that start again with the UTC day or month, `/usage`
on Discord and Telegram (admins checked where they ask), and token counters in /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import AgentEvent, TextDelta, Turn
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from bridges.discord.bridge import DiscordBridge
from bridges.quotas import Keys, QuotaNotices
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy
from bridges.surface import Inbound
from fakes.discord import MANAGE_GUILD, FakeDiscord
from fakes.discord.server import EPHEMERAL
from fakes.openai import FakeOpenAI, content
from fakes.telegram import FakeTelegram, FakeUser
from fakes.telegram.harness import ADMIN_ID, POLICY, ScriptedAgent, running
from models import InboundMessage, Role, TranscriptEntry, UsageCounter
from settings import ConfigError, QuotaLimits, QuotaSettings, load_settings
from tests.agent_support import FAST_RETRIES, checked
from tests.clock import Clock
from tests.discord_support import discord_config
from tests.surfaces import RecordingSurface
from tests.test_relay import AskedAgain

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GROUP = ("telegram_chat", "group-1")

ENGLISH = QuotaNotices()
"""The English words `/usage` answers with."""


async def report(relay: Relay) -> str:
    """What `/usage` tells the user "u" in English."""
    return await relay.quotas.report(Keys.of(said("")), ENGLISH, user_label=ENGLISH.report_you)


def policy(**quotas: QuotaLimits | str) -> RelayPolicy:
    return replace(POLICY, quotas=QuotaSettings(**quotas))  # type: ignore[arg-type]


def said(text: str, user: str = "u1", place: tuple[str, str] = GROUP, message_id: str = "") -> Inbound:
    return Inbound(
        "telegram",
        place[1],
        user,
        f"User {user}",
        text,
        message_id=message_id,
        binding_scopes=(place,),
    )


def at(moment: datetime) -> Clock:
    clock = Clock()
    clock.now = moment
    return clock


async def user_texts(db: async_sessionmaker[AsyncSession]) -> list[str]:
    async with db() as session:
        rows = await session.scalars(
            select(TranscriptEntry.text).where(TranscriptEntry.role == Role.USER).order_by(TranscriptEntry.id)
        )
        return list(rows)


async def unhandled(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as session:
        count = await session.scalar(
            select(func.count()).select_from(InboundMessage).where(InboundMessage.handled_at.is_(None))
        )
    return count or 0


# --- the Relay, on both databases ------------------------------------------------------------------


async def test_a_user_past_the_message_limit_is_told_which_and_when_until_the_day_turns(
    db: async_sessionmaker[AsyncSession],
) -> None:
    clock, agent = at(NOON), ScriptedAgent()
    relay = Relay(db, {"scripted": agent}, policy(user=QuotaLimits(messages=2)), now=clock)
    surface = RecordingSurface()
    for number, text in enumerate(("one", "two", "three"), start=1):
        await relay.handle(said(text, message_id=str(number)), surface)
    assert [turn.text for turn in agent.turns] == ["one", "two"]  # the agent never saw "three"
    refusal = QuotaNotices.user_messages.format(limit=2, period="today", reset="at 00:00 UTC, in 12 h 0 min")
    assert surface.visible_texts()[-1] == refusal
    assert await user_texts(db) == ["one", "two"] and await unhandled(db) == 0  # refused, not left over
    assert await report(relay) == "\n".join(
        [
            "You today: 2 of 2 messages, 0 tokens (no limit).",
            "Everyone here today: 2 messages (no limit), 0 tokens (no limit).",
            "Counters start again at 00:00 UTC, in 12 h 0 min.",
        ]
    )

    clock.now = NOON + timedelta(hours=12)  # 00:00 UTC: a new day, a new counter
    await relay.handle(said("four", message_id="4"), surface)
    assert agent.turns[-1].text == "four" and surface.visible_texts()[-1] == "scripted: four (#1)"


async def test_a_place_limit_is_shared_and_a_refusal_counts_against_no_one(
    db: async_sessionmaker[AsyncSession],
) -> None:
    agent = ScriptedAgent()
    limits = policy(place=QuotaLimits(messages=2), user=QuotaLimits(messages=5))
    relay = Relay(db, {"scripted": agent}, limits, now=at(NOON))
    surface = RecordingSurface()
    for user in ("alice", "bob", "carol"):
        await relay.handle(said(f"hi from {user}", user), surface)
    assert [turn.user_id for turn in agent.turns] == ["alice", "bob"]
    reset = "at 00:00 UTC, in 12 h 0 min"
    assert surface.visible_texts()[-1] == QuotaNotices.place_messages.format(
        limit=2, period="today", reset=reset
    )
    carol = await relay.quotas.report(Keys.of(said("", "carol")), ENGLISH, user_label=ENGLISH.report_you)
    assert carol.splitlines()[:2] == [
        "You today: 0 of 5 messages, 0 tokens (no limit).",  # her refused message took nothing
        "Everyone here today: 2 of 2 messages, 0 tokens (no limit).",
    ]
    await relay.handle(said("hi elsewhere", "carol", ("telegram_chat", "group-2")), surface)
    assert agent.turns[-1].text == "hi elsewhere"


async def test_messages_to_a_moderator_never_count(db: async_sessionmaker[AsyncSession]) -> None:
    agent = ScriptedAgent()
    relay = Relay(db, {"scripted": agent}, policy(user=QuotaLimits(messages=1)), now=at(NOON))
    surface = RecordingSurface()
    await relay.request_human(said("/human"), surface)
    for text in ("first", "second", "third"):
        await relay.handle(said(text), surface)
    assert agent.turns == [] and await user_texts(db) == ["first", "second", "third"]
    assert "You today: 0 of 1 messages" in await relay.quotas.report(
        Keys.of(said("")), ENGLISH, user_label=ENGLISH.report_you
    )


async def test_the_count_is_part_of_the_turns_one_write_before_the_agent(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """One transaction records the message and begins the turn, the count included: no extra commit
    before the agent is called."""
    engine = db.kw["bind"].sync_engine
    commits: list[str] = []
    listener = lambda connection: commits.append("commit")  # noqa: E731
    seen_at_call: list[int] = []

    class Counting(ScriptedAgent):
        async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
            seen_at_call.append(len(commits))
            async for agent_event in super().stream(turn):
                yield agent_event

    relay = Relay(db, {"scripted": Counting()}, policy(user=QuotaLimits(messages=5)), now=at(NOON))
    event.listen(engine, "commit", listener)
    try:
        await relay.handle(said("hello"), RecordingSurface())
    finally:
        event.remove(engine, "commit", listener)
    assert seen_at_call == [1]
    assert "You today: 1 of 5 messages" in await relay.quotas.report(
        Keys.of(said("")), ENGLISH, user_label=ENGLISH.report_you
    )


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    async with checked(FakeOpenAI(api_key="sk-quota")) as server:
        yield server


async def test_a_token_limit_counts_what_the_provider_reports_and_metrics_show_it(
    db: async_sessionmaker[AsyncSession], openai: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    """The fake reports usage only because the agent asks (`include_usage`); a reply may cross the limit,
    the next message is refused."""
    settings = OpenAICompatSettings(
        base_url=openai.url, api_key=SecretStr("sk-quota"), model=openai.model, **FAST_RETRIES
    )
    agents = {"gpt": OpenAICompatAgent("gpt", settings, http)}
    month = replace(policy(period="month", user=QuotaLimits(tokens=10)), default_agent="gpt")
    relay = Relay(db, agents, month, now=at(datetime(2026, 1, 20, tzinfo=UTC)))
    before = {kind: tokens("gpt", kind) for kind in ("prompt", "completion")}
    surface = RecordingSurface()
    openai.script(content("four words of reply"))
    await relay.handle(said("a b c"), surface)  # 3 prompt tokens, 4 completion
    openai.script(content("ok"))
    await relay.handle(said("d e"), surface)  # 3 + 4 + 2 = 9 prompt tokens, 1 completion: 17 in all
    await relay.handle(said("f"), surface)
    assert len(openai.requests) == 2
    assert all(body["stream_options"] == {"include_usage": True} for body in openai.requests)
    assert surface.visible_texts()[-1] == QuotaNotices.user_tokens.format(
        limit=10, period="this month", reset="on 2026-02-01 at 00:00 UTC, in 12 days"
    )
    async with db() as session:
        row = await session.scalar(select(UsageCounter).filter_by(scope="user", scope_id="telegram:u1"))
    assert row is not None and (row.messages, row.prompt_tokens, row.completion_tokens) == (2, 12, 5)
    assert tokens("gpt", "prompt") - before["prompt"] == 12
    assert tokens("gpt", "completion") - before["completion"] == 5


def tokens(agent: str, kind: str) -> float:
    return REGISTRY.get_sample_value("switchboard_agent_tokens_total", {"agent": agent, "kind": kind}) or 0.0


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[quotas]\nperiod = 'week'", "quotas.period: Input should be 'day' or 'month'"),
        ("[quotas.user]\nmessages = 0", "quotas.user.messages: Input should be greater than or equal to 1"),
        ("[quotas.place]\ntokens = -5", "quotas.place.tokens: Input should be greater than or equal to 1"),
        ("[quotas.server]\nmessages = 5", "quotas.server: unknown key"),
        ("[limits]\nburst_window_seconds = -1", "limits.burst_window_seconds: Input should be greater"),
        ("[limits]\nburst_window_seconds = 60", "limits.burst_window_seconds: Input should be less"),
    ],
)
def test_bad_quota_settings_are_named(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        load_settings(path, {})


def test_quotas_are_off_unless_a_limit_is_set(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text("[quotas]\nperiod = 'month'\n[quotas.place]\ntokens = 50000\n", encoding="utf-8")
    assert load_settings(path, {}).quotas.enabled
    path.write_text("[quotas]\nperiod = 'month'\n", encoding="utf-8")
    assert not load_settings(path, {}).quotas.enabled


# --- Telegram ------------------------------------------------------------------------------------


async def test_telegram_refuses_past_the_limit_and_usage_is_for_the_user_and_for_admins_where_they_are(
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake = FakeTelegram()
    limits = policy(user=QuotaLimits(messages=1))
    async with running(db, fake, clock=at(NOON), policy=limits) as telegram:
        bob, carol, dave = fake.user("Bob"), fake.user("Carol"), fake.user("Dave")
        admin = FakeUser(ADMIN_ID, "Admin")
        private = fake.private_chat(bob)
        fake.say(private, bob, "hello")
        await telegram.final(private, "scripted: hello (#1)")
        fake.say(private, bob, "again")
        refusal = QuotaNotices.user_messages.format(
            limit=1, period="today", reset="at 00:00 UTC, in 12 h 0 min"
        )
        await telegram.final(private, refusal)
        fake.say(private, bob, "/usage")
        await telegram.final(
            private,
            "You today: 1 of 1 messages, 0 tokens (no limit).\n"
            "Everyone here today: 1 messages (no limit), 0 tokens (no limit).\n"
            "Counters start again at 00:00 UTC, in 12 h 0 min.",
        )
        assert [turn.text for turn in telegram.agent.turns] == ["hello"]

        group = fake.group("Team")
        fake.join(group, dave, "administrator")
        fake.join(group, carol)
        asked = fake.say(group, bob, "@switchboard_bot hi")
        await telegram.final(group, refusal)  # the user's limit holds in every place
        bobs = "Bob today: 1 of 1 messages, 0 tokens (no limit).\nEveryone here today: 0 messages (no limit)"
        fake.say(group, carol, "/usage", reply_to=asked)
        await telegram.final(group, QuotaNotices.not_admin)
        for shown, who in enumerate((admin, dave), start=1):  # the bot's admin anywhere; the group's
            fake.say(group, who, "/usage", reply_to=asked)  # administrator in the group
            await fake.wait_for(
                lambda count=shown: sum(m.text.startswith(bobs) for m in fake.bot_messages(group)) == count,
                what="Bob's usage shown to an admin",
            )
        dave_private = fake.private_chat(dave)
        fake.say(dave_private, dave, f"/usage {bob.id}")  # a group's administrator, outside the group
        await telegram.final(dave_private, QuotaNotices.not_admin)


# --- Discord -------------------------------------------------------------------------------------


async def test_discord_refuses_past_the_limit_and_usage_is_private_and_for_server_admins(
    db: async_sessionmaker[AsyncSession],
) -> None:
    agent = ScriptedAgent()
    relay = Relay(db, {"scripted": agent}, policy(place=QuotaLimits(messages=1)), now=at(NOON))
    async with FakeDiscord() as fake:
        owner = fake.add_user("owner")
        guild = fake.add_guild("Test server", owner)
        admins = fake.add_role(guild, "Admins", MANAGE_GUILD)
        admin, alice = fake.add_user("admin"), fake.add_user("alice")
        fake.add_member(guild, admin, (admins,))
        fake.add_member(guild, alice)
        channel = fake.add_text_channel(guild, "general")
        bridge = DiscordBridge(discord_config(fake), relay)
        await bridge.start()
        try:
            await fake.user_says(channel, alice, f"<@{fake.bot.id}> hello")
            await fake.wait_for_texts(channel, ["scripted: hello (#1)"])
            await fake.user_says(channel, admin, f"<@{fake.bot.id}> and me?")
            refusal = QuotaNotices.place_messages.format(
                limit=1, period="today", reset="at 00:00 UTC, in 12 h 0 min"
            )
            await fake.wait_for_texts(channel, ["scripted: hello (#1)", refusal])
            assert [turn.text for turn in agent.turns] == ["hello"]

            own = await fake.answer(await fake.slash(channel, alice, "usage"))
            assert own.flags & EPHEMERAL and own.content.splitlines()[:2] == [
                "You today: 1 messages (no limit), 0 tokens (no limit).",
                "Everyone here today: 1 of 1 messages, 0 tokens (no limit).",
            ]
            theirs = await fake.answer(await fake.slash(channel, admin, "usage", member=alice))
            assert theirs.flags & EPHEMERAL
            assert theirs.content.startswith("alice today: 1 messages (no limit)")
            refused = await fake.answer(await fake.slash(channel, alice, "usage", member=admin))
            assert refused.flags & EPHEMERAL and refused.content == QuotaNotices.not_admin
            elsewhere = await fake.slash(fake.dm_channel(admin), admin, "usage", member=alice)
            assert (await fake.answer(elsewhere)).content == QuotaNotices.not_admin  # not in their server
        finally:
            await bridge.close(grace=1.0)


async def test_a_regeneration_counts_like_a_message_and_is_refused_past_the_limit(
    db: async_sessionmaker[AsyncSession],
) -> None:
    agent = AskedAgain()
    relay = Relay(db, {"scripted": agent}, policy(user=QuotaLimits(messages=2)), now=at(NOON))
    surface = RecordingSurface()
    await relay.handle(said("hi", message_id="1"), surface)
    (reply_id,) = surface.posted
    answers: list[str | None] = []

    async def acknowledge(notice: str | None) -> None:
        answers.append(notice)

    press = said("", message_id=reply_id)
    await relay.regenerate(press, surface, acknowledge, relay.catalogue.words())  # the second message
    await relay.regenerate(press, surface, acknowledge, relay.catalogue.words())
    refusal = QuotaNotices.user_messages.format(limit=2, period="today", reset="at 00:00 UTC, in 12 h 0 min")
    assert answers == [None, refusal]
    assert [turn.text for turn in agent.turns] == ["hi", "hi"]  # the third ask never reached the agent


async def test_a_reply_stopped_before_the_providers_usage_report_counts_an_estimate(
    db: async_sessionmaker[AsyncSession],
) -> None:
    agent = ScriptedAgent()
    relay = Relay(db, {"scripted": agent}, policy(user=QuotaLimits(tokens=100)), now=at(NOON))
    surface = RecordingSurface()
    feed = agent.feed("write a lot")
    reply = asyncio.create_task(relay.handle(said("write a lot", message_id="1"), surface))
    await feed.put(TextDelta("x" * 400))  # 100 tokens' worth, and the usage report never comes
    await surface.wait_for(lambda: surface.count("send") == 1)
    assert relay.stop(said(""))
    await reply
    assert "106 of 100 tokens" in await report(relay)  # 3 for the question, 103 for the text and mark
    await relay.handle(said("more", message_id="2"), surface)
    assert [turn.text for turn in agent.turns] == ["write a lot"]  # the limit holds
