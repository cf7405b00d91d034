"""The Telegram bridge end to end: real python-telegram-bot against the fake Bot API, Relay and database.

Every test also checks what production would punish: no 429s (unless provoked), and never a
"message is not modified" edit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import AgentUnavailable, Button, Media, Message, TextDelta
from bridges.relay import Notices
from bridges.split import utf16_length
from bridges.telegram.config import TelegramConfig
from bridges.telegram.handlers import Replies
from fakes.telegram import FakeChat, FakeTelegram, FakeUser, Limit, Limits, Window
from fakes.telegram.harness import ADMIN_ID, Telegram, running
from tests.polling import eventually, has, holds, queued_text, transcript_texts

pytestmark = pytest.mark.e2e

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""The bridge's own behaviour does not depend on the database; the button store runs on both."""


@pytest.fixture
async def telegram(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Telegram]:
    async with running(db) as harness:
        yield harness


def assert_clean(fake: FakeTelegram) -> None:
    assert fake.refusals(429) == [], fake.flood.refused
    assert fake.not_modified == 0
    assert fake.refusals(400) == []


@pytest.mark.slow
@sqlite_only
async def test_private_chat_streams_as_a_draft_then_posts_the_exact_final_text(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    alice = fake.user("Alice")
    chat = fake.private_chat(alice)
    feed = agent.feed("hello")
    fake.say(chat, alice, "hello")

    def draft_shows(text: str) -> bool:
        return any(d.history and d.history[-1] == text for d in fake.drafts_in(chat))

    await fake.wait_for(lambda: fake.count("sendChatAction") >= 1, what="typing while the agent thinks")
    await feed.put(TextDelta("Hello"))
    await fake.wait_for(lambda: draft_shows("Hello ▌"), what="first draft")
    await feed.put(TextDelta(", **world**"))
    await fake.wait_for(lambda: draft_shows("Hello, world ▌"), what="second draft")
    assert fake.bot_messages(chat) == []  # still a draft: nothing posted yet
    await feed.put(TextDelta(". Bye."))
    await feed.put(None)
    final = await telegram.final(chat, "Hello, world. Bye.")

    assert [e["type"] for e in final.entities] == ["bold"]
    assert final.edits == 0 and len(fake.bot_messages(chat)) == 1
    (draft,) = fake.drafts_in(chat)
    # The final text, without the in-progress marker, is posted at once, not drafted first.
    assert draft.history == ["Hello ▌", "Hello, world ▌"]
    assert fake.count("sendChatAction") >= 1
    assert_clean(fake)


@pytest.mark.slow
@sqlite_only
async def test_group_mention_streams_by_send_and_edits_without_429s(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    bob, carol = fake.user("Bob"), fake.user("Carol")
    group = fake.group("Team")
    fake.say(group, carol, "just chatting, no mention")
    feed = agent.feed("what is **up**")
    question = fake.say(group, bob, "@switchboard_bot what is **up**")

    await feed.put(TextDelta("Here is **bo"))
    (reply,) = await telegram.replies(group)
    await fake.wait_for(lambda: reply.text == "Here is **bo ▌", what="first text, marked in progress")
    await feed.put(TextDelta("ld** and `co"))
    await fake.wait_for(lambda: reply.text == "Here is bold and `co ▌", what="an edit")
    await feed.put(TextDelta("de`\n\nHi\n--"))
    await fake.wait_for(lambda: reply.text.endswith("Hi\n-- ▌"), what="a heading, not yet underlined")
    await feed.put(None)
    await telegram.final(group, "Here is bold and code\n\n✏ Hi")  # the final edit drops the marker

    assert reply.reply_to is question and reply.thread_id is None
    assert reply.history[0] == "Here is **bo ▌" and len(reply.history) >= 4
    assert all(text.endswith(" ▌") for text in reply.history[:-1])
    edits = reply.edits
    assert {e["type"] for e in reply.entities} >= {"bold", "code", "underline"}
    assert [t.text for t in agent.turns] == ["what is **up**"]  # the unmentioned message was ignored
    assert fake.drafts == {}

    fake.say(group, carol, "and for me?", reply_to=reply)  # a reply to the bot triggers it too
    await telegram.final(group, "scripted: and for me? (#1)")
    assert reply.edits == edits
    assert_clean(fake)


@sqlite_only
async def test_an_edit_that_renders_as_shown_is_not_sent(telegram: Telegram) -> None:
    """Two markdown sources can render alike; Telegram would answer the second "message is not
    modified", so the surface does not send it."""
    fake = telegram.fake
    group = fake.group("Team")
    surface = telegram.bridge.surface_for("telegram", str(group.id), "")
    assert surface is not None
    message_id = await surface.send("Hi\n--")
    await surface.edit(message_id, "Hi\n---", final=True)
    (message,) = fake.bot_messages(group)
    assert message.text == "✏ Hi" and message.edits == 0
    assert_clean(fake)


@sqlite_only
async def test_twenty_mentions_in_one_group_stay_within_its_window(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """A group takes a hard count of messages per window (20 a minute; 10 a half second here, for the
    fake and the bot alike, so the test need not wait a minute): twenty replies at once need two
    windows, and Telegram never answers 429."""
    strict = FakeTelegram(limits=Limits(per_chat=Limit(100.0, 1.0, 100.0), per_group=Window(10, 0.5)))
    budgets = {"chat_messages_per_second": 30.0, "chat_burst": 10}
    async with running(db, strict, **budgets, group_messages=10, group_window_seconds=0.5) as telegram:
        fake = telegram.fake
        group = fake.group("Crowd")
        for n in range(20):
            fake.say(group, fake.user(f"User {n}"), f"@switchboard_bot question {n}")
        for n in range(20):
            await telegram.final(group, f"scripted: question {n} (#1)")
        assert_clean(fake)


@pytest.mark.slow
@sqlite_only
async def test_forum_topics_keep_separate_conversations(telegram: Telegram) -> None:
    fake = telegram.fake
    dave = fake.user("Dave")
    forum = fake.group("Support", forum=True)
    billing, bugs = fake.open_topic(forum, "Billing"), fake.open_topic(forum, "Bugs")

    fake.say(forum, dave, "@switchboard_bot one", thread_id=billing)
    await telegram.final(forum, "scripted: one (#1)", thread_id=billing)
    fake.say(forum, dave, "@switchboard_bot two", thread_id=bugs)
    await telegram.final(forum, "scripted: two (#1)", thread_id=bugs)
    fake.say(forum, dave, "@switchboard_bot three", thread_id=billing)
    await telegram.final(forum, "scripted: three (#2)", thread_id=billing)

    assert [m.text for m in fake.bot_messages(forum, bugs)] == ["scripted: two (#1)"]
    assert_clean(fake)


@pytest.mark.slow
async def test_buttons_round_trip_through_the_store_even_after_a_restart(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    erin = fake.user("Erin")
    chat = fake.private_chat(erin)
    big = Button("Plan B: the long one", {"choice": "b", "notes": "x" * 500})
    agent.script["menu"] = [
        Message(
            "Pick a plan",
            buttons=(Button("Plan A", {"choice": "a"}), big, Button("Docs", url="https://d.example")),
        ),
        Media("https://img.example/cat.png", caption="A **cat**"),
    ]
    fake.say(chat, erin, "menu")
    menu, photo = await telegram.replies(chat, 2)

    assert menu.text == "Pick a plan" and photo.photo == "https://img.example/cat.png"
    assert photo.text == "A cat" and photo.entities[0]["type"] == "bold"
    datas = [b["callback_data"] for b in menu.buttons if "callback_data" in b]
    assert len(datas) == 2 and all(d.startswith("sb:") and len(d.encode()) <= 64 for d in datas)
    assert menu.buttons[2] == {"text": "Docs", "url": "https://d.example"}

    await telegram.restart()  # the payload must come back from the database, not from memory
    query = fake.press(menu, datas[1], erin)
    await telegram.final(chat, "scripted: Plan B: the long one (#2)")
    assert agent.turns[-1].button == big
    assert fake.callback_answers[query].get("text") is None

    fake.press(menu, datas[0], erin)
    menu.reply_markup = {"inline_keyboard": [[{"text": "x", "callback_data": "sb:forged-token-00"}]]}
    forged = fake.press(menu, "sb:forged-token-00", erin)
    await fake.wait_for(lambda: forged in fake.callback_answers, what="the forged press answered")
    assert fake.callback_answers[forged]["text"] == Replies.expired_button
    await telegram.final(chat, "scripted: Plan A (#3)")
    assert len(agent.turns) == 3
    assert_clean(fake)


@pytest.mark.slow
@sqlite_only
async def test_a_6000_character_reply_is_split_below_4096_utf16_units(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    frank = fake.user("Frank")
    chat = fake.private_chat(frank)
    paragraph = "Emoji count twice in UTF-16 😀. " * 10
    long = "\n\n".join(f"Part {n}: {paragraph.strip()}" for n in range(1, 20))
    assert len(long) > 6000 and utf16_length(long) > len(long)
    agent.script["long"] = [TextDelta(long[:3000]), TextDelta(long[3000:])]
    fake.say(chat, frank, "long")
    first, second = await telegram.replies(chat, 2)
    await fake.wait_for(
        lambda: (first.text + "\n\n" + second.text).replace("\n\n", "") == long.replace("\n\n", "")
    )

    assert all(utf16_length(m.text) <= 4096 for m in (first, second))
    assert first.text.endswith(paragraph.strip())  # cut at a paragraph boundary
    assert_clean(fake)


@pytest.mark.slow
@sqlite_only
async def test_a_code_block_split_across_messages_stays_a_code_block_in_each(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    frank = fake.user("Frank")
    chat = fake.private_chat(frank)
    code = "".join(f"    total += values[{n}]  # step {n}\n" for n in range(150))
    text = f"Try this:\n```python\ndef total(values):\n{code}    return total\n```\nDone."
    assert utf16_length(text) > 4096
    agent.script["code"] = [TextDelta(text[:3000]), TextDelta(text[3000:])]
    fake.say(chat, frank, "code")
    await fake.wait_for(
        lambda: (m := fake.bot_messages(chat)) and m[-1].text.endswith("Done."),
        what="the whole reply",
    )
    messages = fake.bot_messages(chat)
    assert len(messages) == 2

    assert all(utf16_length(m.text) <= 4096 for m in messages)
    assert all("```" not in m.text for m in messages)  # every fence closed, so rendered, not shown
    for message in messages:
        (block,) = [e for e in message.entities if e["type"] == "pre"]
        assert block["language"] == "python"
    assert_clean(fake)


async def test_an_edit_before_its_turn_replaces_the_queued_text_and_a_later_one_is_recorded(
    telegram: Telegram, db: async_sessionmaker[AsyncSession]
) -> None:
    fake, agent = telegram.fake, telegram.agent
    frank = fake.user("Frank")
    chat = fake.private_chat(frank)
    first = agent.feed("first")
    fake.say(chat, frank, "first")
    await first.put(TextDelta("thinking"))
    await fake.wait_for(lambda: bool(fake.drafts_in(chat)), what="the first reply streaming")
    queued = fake.say(chat, frank, "secnod")
    await eventually(lambda: holds(queued_text(db, queued.message_id), "secnod"), what="the typo queued")
    fake.edit(queued, "second")
    await eventually(lambda: holds(queued_text(db, queued.message_id), "second"), what="the text replaced")
    await first.put(None)
    await telegram.final(chat, "scripted: second (#2)")
    assert [turn.text for turn in agent.turns] == ["first", "second"]

    fake.edit(queued, "second, really")  # answered already: only recorded
    note = "edited a message: second, really"
    await eventually(lambda: has(transcript_texts(db), note), what="the late edit in the transcript")
    assert len(agent.turns) == 2
    assert_clean(fake)


@sqlite_only
async def test_thirty_concurrent_private_chats_without_429s(telegram: Telegram) -> None:
    fake = telegram.fake
    users = [fake.user(f"User {n}") for n in range(30)]
    chats = [fake.private_chat(user) for user in users]
    for n, (chat, user) in enumerate(zip(chats, users, strict=True)):
        fake.say(chat, user, f"question {n}")
    for n, chat in enumerate(chats):
        await telegram.final(chat, f"scripted: question {n} (#1)")
    assert all(len(fake.bot_messages(chat)) == 1 for chat in chats)
    assert_clean(fake)


@pytest.mark.slow
@sqlite_only
async def test_commands_are_registered_and_agent_is_for_admins_only(telegram: Telegram) -> None:
    fake = telegram.fake
    assert [c["command"] for c in fake.commands["default"]] == ["start", "reset", "human", "stop", "usage"]
    german = {c["command"]: c["description"] for c in fake.commands["default@de"]}  # a menu per language
    assert german["human"] == "Einen menschlichen Moderator rufen"
    assert {"default@es", "default@ru"} <= set(fake.commands)
    (admin_scope,) = (scope for scope in fake.commands if not scope.startswith("default"))
    assert json.loads(admin_scope) == {"type": "chat", "chat_id": ADMIN_ID}
    assert [c["command"] for c in fake.commands[admin_scope]] == [
        "start",
        "reset",
        "human",
        "stop",
        "usage",
        "agent",
        "block",
        "unblock",
    ]

    user, admin = fake.user("Hank"), FakeUser(ADMIN_ID, "Admin")
    chat, group = fake.private_chat(user), fake.group("Ops")

    async def conversation(where: FakeChat, who: FakeUser, steps: list[tuple[str, str]]) -> None:
        for said, answer in steps:
            fake.say(where, who, said)
            await telegram.final(where, answer)

    await asyncio.gather(
        conversation(
            chat,
            user,
            [
                ("/start", TelegramConfig.model_fields["start_text"].default),
                ("/agent other", Replies.not_admin),
                ("/human", Notices.handoff_requested),
                ("is anyone there?", Notices.handoff_pending),  # goes to the moderators, not the agent
                ("/reset", Notices.reset),
                ("back", "scripted: back (#1)"),
            ],
        ),
        conversation(
            group,
            admin,
            [
                ("/agent@switchboard_bot other", Replies.agent_bound.format(agent="other")),
                ("@switchboard_bot hi", "other: hi (#1)"),
            ],
        ),
    )
    assert [t.text for t in telegram.agent.turns] == ["back"]
    assert_clean(fake)


@sqlite_only
async def test_a_provider_failure_ends_the_reply_with_a_notice_and_keeps_the_session(
    telegram: Telegram,
) -> None:
    fake, agent = telegram.fake, telegram.agent
    ivy = fake.user("Ivy")
    group = fake.group("Help")
    agent.script["break"] = AgentUnavailable("upstream down")
    fake.say(group, ivy, "@switchboard_bot break")
    notice = AgentUnavailable("upstream down").user_message
    await telegram.final(group, f"partial answer\n\n⚠️ {notice}")
    fake.say(group, ivy, "@switchboard_bot again")
    await telegram.final(group, "scripted: again (#1)")  # same conversation; the failed turn kept no state
    assert_clean(fake)


@pytest.mark.slow
@sqlite_only
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB's own RetryAfter
async def test_draft_flood_control_falls_back_to_a_message_and_edits(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """A bot paced faster than Telegram allows: a 429 on a draft is honoured and the text still lands."""
    strict = FakeTelegram(limits=Limits(per_chat=Limit(1.0, 1.0, 1.0)))
    async with running(db, strict, chat_messages_per_second=20, chat_burst=5) as telegram:
        fake, agent = telegram.fake, telegram.agent
        jo = fake.user("Jo")
        chat = fake.private_chat(jo)
        feed = agent.feed("go")
        fake.say(chat, jo, "go")
        await feed.put(TextDelta("one"))
        await fake.wait_for(lambda: bool(fake.drafts_in(chat)), what="the first draft")
        await feed.put(TextDelta(" two"))  # within the second: Telegram refuses the draft update
        await fake.wait_for(lambda: bool(fake.bot_messages(chat)), what="the fallback message")
        await feed.put(TextDelta(" three"))
        await feed.put(None)
        await telegram.final(chat, "one two three")
        assert fake.refusals(429) and all(r.method == "sendMessageDraft" for r in fake.refusals(429)[:1])
        assert len(fake.bot_messages(chat)) == 1 and fake.not_modified == 0
