"""The trigger policy on its own (bridges/triggers.py) and its configuration; the bridges' use of it is
tested end to end in test_discord_triggers.py and test_telegram_triggers.py."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from bridges.triggers import PATTERN_MAX_CHARS, MessageFacts, TriggerPolicy, TriggerRule
from settings import ConfigError, Settings, load_settings

CHANNEL = (("discord_channel", "10"), ("discord_guild", "1"))
"""A message's places, most specific first, as the Discord bridge gives them."""


def rule(scope: str = "global", id: str = "", **keys: Any) -> TriggerRule:
    return TriggerRule(scope=scope, id=id, **keys)


def facts(text: str, **keys: Any) -> MessageFacts:
    return MessageFacts(
        text=text, scopes=keys.pop("scopes", CHANNEL), user_id=keys.pop("user_id", "7"), **keys
    )


def reason(policy: TriggerPolicy, text: str, **keys: Any) -> str | None:
    answer = policy.answer(facts(text, **keys))
    return answer.reason if answer else None


def test_by_default_only_a_message_addressed_to_the_bot_is_answered() -> None:
    policy = TriggerPolicy()
    assert reason(policy, "hello all") is None
    assert reason(policy, "hi", mentioned=True) == "addressed"
    assert reason(policy, "hi", reply_to_bot=True) == "addressed"
    assert reason(policy, "/reset", is_command=True) == "addressed"
    assert reason(policy, "hi", private=True) == "addressed"
    assert reason(policy, "hi", mentioned=True, from_bot=True) is None  # bots are ignored by default
    assert (
        reason(TriggerPolicy([rule(ignore_bots=False)]), "hi", mentioned=True, from_bot=True) == "addressed"
    )


def test_keywords_are_whole_words_in_any_case() -> None:
    policy = TriggerPolicy([rule(keywords=("refund", "c++", "price list"))])
    assert reason(policy, "How do I get a REFUND?") == "keyword"
    assert reason(policy, "refunds are slow") is None  # not the whole word
    assert reason(policy, "I like c++ a lot") == "keyword"
    assert reason(policy, "where is the Price  list") is None
    assert reason(policy, "where is the price list?") == "keyword"


def test_a_prefix_triggers_and_is_taken_off_the_text() -> None:
    policy = TriggerPolicy([rule(prefixes=("?ask", "bot,"))])
    answer = policy.answer(facts("  ?ASK what is up"))
    assert answer is not None and (answer.reason, answer.text) == ("prefix", "what is up")
    assert reason(policy, "Bot, hi") == "prefix"
    assert reason(policy, "ask?") is None


def test_the_pattern_runs_in_linear_time_even_where_backtracking_would_not_end() -> None:
    policy = TriggerPolicy([rule(pattern=r"(?i)^(a+)+$|order #\d{4,}")])
    assert reason(policy, "Where is ORDER #12345?") == "pattern"
    started = time.perf_counter()
    assert reason(policy, "a" * 4000 + "!") is None  # exponential for a backtracking engine
    assert time.perf_counter() - started < 0.5


def test_modes_all_and_new_posts() -> None:
    policy = TriggerPolicy(
        [rule("discord_channel", "10", mode="all"), rule("discord_channel", "20", mode="new_posts")]
    )
    assert reason(policy, "anything") == "all"
    forum = (("discord_channel", "20"), ("discord_guild", "1"))
    assert reason(policy, "my question", scopes=forum, new_post=True) == "new_post"
    assert reason(policy, "a follow-up", scopes=forum) is None
    assert reason(policy, "elsewhere", scopes=(("discord_channel", "30"),)) is None


def test_the_most_specific_place_wins_as_a_whole() -> None:
    policy = TriggerPolicy(
        [
            rule(keywords=("help",)),
            rule("discord_guild", "1", keywords=("support",)),
            rule("discord_channel", "10", prefixes=("!bot",)),
        ]
    )
    assert reason(policy, "support please") is None  # the channel's rule replaces the server's
    assert reason(policy, "!bot hi") == "prefix"
    other_channel = (("discord_channel", "11"), ("discord_guild", "1"))
    assert reason(policy, "support please", scopes=other_channel) == "keyword"
    assert reason(policy, "help", scopes=other_channel) is None
    assert reason(policy, "help", scopes=(("telegram_chat", "-5"),)) == "keyword"


def test_ignore_rules_silence_passive_triggers_but_not_an_address() -> None:
    policy = TriggerPolicy(
        [rule(mode="all", ignore_users=(99,), ignore_roles=("555",), ignore_prefixes=("!", "//"))]
    )
    assert reason(policy, "hello") == "all"
    assert reason(policy, "hello", user_id="99") is None
    assert reason(policy, "hello", roles=frozenset({"555", "1"})) is None
    assert reason(policy, "  // just a note") is None
    assert reason(policy, "!play song") is None
    assert reason(policy, "!play song", mentioned=True) == "addressed"
    assert reason(policy, "hello", user_id="99", reply_to_bot=True) == "addressed"


def test_random_replies_follow_the_rate_and_never_come_from_an_edit() -> None:
    policy = TriggerPolicy([rule(random_reply_rate=0.25)], chance=random.Random(20).random)
    picked = [reason(policy, f"chatter {n}") for n in range(2000)]
    assert 400 < picked.count("random") < 600 and set(picked) == {"random", None}
    runs = [
        [reason(TriggerPolicy([rule(random_reply_rate=0.25)], chance=random.Random(5).random), "x")]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]  # the same seed picks the same messages
    always = TriggerPolicy([rule(random_reply_rate=1.0)])
    assert always.answer(facts("x"), roll=False) is None
    assert always.answer(facts("x")) is not None


def load(tmp_path: Path, toml: str) -> Settings:
    path = tmp_path / "switchboard.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(path, {"SWITCHBOARD_DISCORD__TOKEN": "t", "SWITCHBOARD_TELEGRAM__TOKEN": "t"})


def test_rules_load_from_toml(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
[discord]
message_content_intent = true
[[triggers]]
scope = "discord_channel"
id = 123456789012345678
mode = "all"
ignore_prefixes = ["//"]
[[triggers]]
scope = "global"
keywords = ["help"]
random_reply_rate = 0.05
""",
    )
    channel, everywhere = settings.triggers
    assert (channel.id, channel.mode) == ("123456789012345678", "all")
    assert everywhere.random_reply_rate == 0.05


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('scope = "global"\npattern = "(?<=x)y"', "triggers.0.pattern: not a regular expression RE2 accepts"),
        ('scope = "global"\npattern = "(a"', "missing )"),
        (f'scope = "global"\npattern = "{"a" * (PATTERN_MAX_CHARS + 1)}"', "at most 300 characters"),
        ('scope = "global"\nrandom_reply_rate = 1.5', "triggers.0.random_reply_rate: Input should be less"),
        ('scope = "channel"\nid = "1"', "triggers.0.scope: unknown scope (known: global, discord_channel"),
        ('scope = "telegram_chat"', "triggers.0: scope telegram_chat needs the id"),
        ('scope = "global"\nid = "5"', "a global rule takes no id"),
        ('scope = "global"\nmode = "everything"', "triggers.0.mode: Input should be 'mention', 'all'"),
        ('scope = "global"\nmode = "all"\nkeywords = ["x"]', 'mode = "all" answers every message already'),
        ('scope = "global"\nkeywords = ["  "]', "triggers.0.keywords: each entry must be"),
        ('scope = "global"\nkeywords = ["a"]\n[[triggers]]\nscope = "global"', "two rules for global"),
        ('scope = "global"\nmode = "all"', "triggers.0: this rule needs the text of messages"),
    ],
)
def test_a_bad_rule_is_one_line_for_the_operator(tmp_path: Path, toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[discord]\n[telegram]\n[[triggers]]\n" + toml)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_telegram_only_rule_needs_no_discord_intent(tmp_path: Path) -> None:
    settings = load(
        tmp_path, '[discord]\n[telegram]\n[[triggers]]\nscope = "telegram_chat"\nid = -100\nmode = "all"'
    )
    assert settings.triggers[0].id == "-100"


def test_telegram_allow_lists_take_groups_and_people_apart(tmp_path: Path) -> None:
    settings = load(tmp_path, "[telegram]\nallowed_chats = [-1001234]\nallowed_users = [42]")
    telegram = settings.platform("telegram")
    assert telegram is not None and telegram.model_dump()["allowed_users"] == (42,)
    with pytest.raises(ConfigError, match=r"telegram.allowed_chats: lists groups, whose ids are negative"):
        load(tmp_path, "[telegram]\nallowed_chats = [42]")
