"""Trigger rules and allow-lists on Telegram end to end: real python-telegram-bot against the fake Bot
API. Each test ends on a message the bot must answer, so the ignored ones before it have been seen."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Button, Message
from bridges.telegram.access import AccessReplies
from bridges.triggers import TriggerPolicy, TriggerRule
from fakes.telegram import FakeChat, FakeTelegram, FakeUser, Limit, Limits, Window
from fakes.telegram.harness import ADMIN_ID, POLICY, Telegram, running
from tests.clock import Clock

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
"""What the bridge answers does not depend on the database."""


def triggers(*rules: TriggerRule, chance: Callable[[], float] = random.random) -> dict[str, Any]:
    return {"policy": replace(POLICY, triggers=TriggerPolicy(rules, chance=chance))}


ROOMY = {
    "chat_messages_per_second": 30.0,
    "chat_burst": 10,
    "group_messages": 60,
    "group_window_seconds": 0.5,
    "edit_interval": 0.02,
}
"""Budgets for a `roomy_fake`: these tests are about what is answered, not about pacing."""


def roomy_fake() -> FakeTelegram:
    return FakeTelegram(limits=Limits(per_chat=Limit(100.0, 1.0, 100.0), per_group=Window(60, 0.5)))


def chat_rule(chat: FakeChat, **keys: Any) -> TriggerRule:
    return TriggerRule(scope="telegram_chat", id=str(chat.id), **keys)


def said(telegram: Telegram) -> list[str]:
    return [turn.text for turn in telegram.agent.turns]


async def test_keywords_prefixes_and_a_pattern_trigger_in_a_group(
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake = roomy_fake()
    group = fake.group("Team")
    rule = chat_rule(group, keywords=("refund",), prefixes=("!ask",), pattern=r"(?i)order #\d+")
    async with running(db, fake, **triggers(rule), **ROOMY) as telegram:
        bob = fake.user("Bob")
        fake.say(group, bob, "refunds are not the keyword")
        fake.say(group, bob, "I want a REFUND")
        await telegram.final(group, "scripted: I want a REFUND (#1)")
        fake.say(group, bob, "!ASK what are the hours")
        await telegram.final(group, "scripted: what are the hours (#2)")
        fake.say(group, bob, "where is Order #42")
        await telegram.final(group, "scripted: where is Order #42 (#3)")
        fake.say(group, bob, "@switchboard_bot hello")
        await telegram.final(group, "scripted: hello (#4)")
        assert said(telegram) == ["I want a REFUND", "what are the hours", "where is Order #42", "hello"]


async def test_an_auto_answer_group_answers_all_but_what_its_ignore_rules_name(
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake = FakeTelegram()
    busy, other, carol = fake.group("Help desk"), fake.group("Chatter"), fake.user("Carol")
    rule = chat_rule(busy, mode="all", ignore_users=(carol.id,), ignore_prefixes=("//",))
    async with running(db, fake, **triggers(rule)) as telegram:
        bob = fake.user("Bob")
        fake.say(other, bob, "no rule in this group")
        fake.say(busy, bob, "// a note")
        fake.say(busy, carol, "Carol is ignored")
        fake.say(busy, bob, "how do I reset my password?")
        await telegram.final(busy, "scripted: how do I reset my password? (#1)")
        fake.say(busy, carol, "@switchboard_bot Carol asks on purpose")
        await telegram.final(busy, "scripted: Carol asks on purpose (#1)")
        assert said(telegram) == ["how do I reset my password?", "Carol asks on purpose"]
        assert fake.bot_messages(other) == []


async def test_random_replies_come_at_the_seeded_rate(db: async_sessionmaker[AsyncSession]) -> None:
    """Updates are handled concurrently, so which message gets which draw may vary; how many draws fall
    under the rate does not: each unaddressed message draws once."""
    seed, rate, count = 3, 0.3, 15
    fake = roomy_fake()
    group = fake.group("Lively")
    rules = triggers(chat_rule(group, random_reply_rate=rate), chance=random.Random(seed).random)
    twin = random.Random(seed)
    picked = sum(twin.random() < rate for _ in range(count))
    assert 0 < picked < count
    async with running(db, fake, **rules, **ROOMY) as telegram:
        people = [fake.user(f"User {n}") for n in range(count)]
        for n, person in enumerate(people):
            fake.say(group, person, f"chatter {n}")
        fake.say(group, people[0], "@switchboard_bot end")
        await telegram.replies(group, picked + 1)
        await fake.wait_for(
            lambda: len(said(telegram)) == picked + 1, what="the picked messages and the last"
        )
        assert "end" in said(telegram)
        assert all(text.startswith("chatter ") for text in said(telegram) if text != "end")


async def test_allow_lists_keep_the_bot_silent_in_groups_and_say_so_once_a_day_in_private(
    db: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    fake = FakeTelegram()
    allowed, elsewhere = fake.group("Allowed"), fake.group("Elsewhere")
    alice, bob = fake.user("Alice"), fake.user("Bob")
    lists = {"allowed_chats": (allowed.id,), "allowed_users": (alice.id,)}
    async with running(db, fake, clock=clock, **lists) as telegram:
        agent = telegram.agent
        fake.say(elsewhere, alice, "@switchboard_bot hi from a group not on the list")
        fake.say(allowed, bob, "@switchboard_bot hi from someone not on the list")
        fake.say(allowed, alice, "@switchboard_bot hi")
        await telegram.final(allowed, "scripted: hi (#1)")
        assert said(telegram) == ["hi"] and fake.bot_messages(elsewhere) == []

        bob_chat = fake.private_chat(bob)
        fake.say(bob_chat, bob, "hello?")
        await telegram.final(bob_chat, AccessReplies.not_available)
        fake.say(bob_chat, bob, "/start")
        fake.say(bob_chat, bob, "hello again?")
        admin = FakeUser(ADMIN_ID, "Admin")  # the bot's admins are on the list without being named in it
        admin_chat = fake.private_chat(admin)
        fake.say(admin_chat, admin, "admin here")
        await telegram.final(admin_chat, "scripted: admin here (#1)")
        assert [m.text for m in fake.bot_messages(bob_chat)] == [AccessReplies.not_available]

        clock.now += timedelta(days=1)
        fake.say(bob_chat, bob, "a day later")
        await telegram.replies(bob_chat, 2)
        assert [m.text for m in fake.bot_messages(bob_chat)] == [AccessReplies.not_available] * 2

        agent.script["menu"] = [Message("Pick", buttons=(Button("A", {"a": 1}),))]
        fake.say(allowed, alice, "@switchboard_bot menu")
        (menu,) = [m for m in await telegram.replies(allowed, 2) if m.text == "Pick"]
        data = next(b["callback_data"] for b in menu.buttons)
        query = fake.press(menu, data, bob)
        await fake.wait_for(lambda: query in fake.callback_answers, what="the press answered")
        assert fake.callback_answers[query]["text"] == AccessReplies.not_available
        assert said(telegram) == ["hi", "admin here", "menu"]


async def test_privacy_mode_hiding_what_a_rule_needs_is_logged_at_start(
    db: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTelegram(privacy_mode=True)
    group = fake.group("Private-mode group")
    async with running(db, fake, **triggers(chat_rule(group, keywords=("help",)))) as telegram:
        assert "its privacy mode hides those" in caplog.text
        bob = fake.user("Bob")
        fake.say(group, bob, "help, anyone?")  # Telegram never delivers it
        fake.say(group, bob, "@switchboard_bot help")
        await telegram.final(group, "scripted: help (#1)")
        assert said(telegram) == ["help"]
