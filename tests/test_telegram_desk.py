"""The Telegram moderator desk end to end: python-telegram-bot against the fake Bot API, with the Relay
and the handoff service on the database, as moderators and users would use it.

Moderators work in a forum supergroup ("Moderators"); the log goes to a second group, or to a topic of
the moderators' forum. Maya is an admin there and Sam a member, so both are moderators by membership
unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.cases import CaseNotices, DeskWords
from bridges.handoff_notices import UserNotices
from bridges.handoff_policy import HandoffPolicy
from bridges.moderator_desk import HandoffView
from bridges.relay import Notices
from bridges.telegram.config import TelegramDeskConfig
from bridges.telegram.desk import DeskReplies, jump_link, notification
from fakes.telegram import FakeChat, FakeMessage, FakeTelegram, FakeUser, Limit, Limits, Window
from fakes.telegram.harness import HANDOFF_POLICY, Telegram, running
from fakes.telegram.markup import read_html, utf16_length
from models import Conversation, Handoff, HandoffStatus, TranscriptEntry
from tests.clock import Clock
from tests.surfaces import RecordingSurface
from tests.test_relay import inbound

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""Only the claim race depends on the database; the rest is the desk's own behaviour."""

ROOMY = Limits(per_chat=Limit(30.0, 1.0, 30.0), per_group=Window(60, 60.0))
"""Telegram's limits, loosened so tests need not wait; the bot's budgets below stay within them."""
QUICK = {
    "chat_messages_per_second": 20.0,
    "chat_burst": 10,
    "group_messages": 60,
}


@dataclass
class Desk:
    telegram: Telegram
    mods: FakeChat
    log: FakeChat
    log_thread: int | None
    maya: FakeUser
    sam: FakeUser
    clock: Clock

    @property
    def fake(self) -> FakeTelegram:
        return self.telegram.fake

    async def notification(self, handoff_id: int) -> FakeMessage:
        """The notification of a handoff, once posted."""

        def find() -> FakeMessage | None:
            heading = f"🆘 Handoff #{handoff_id} "
            return next((m for m in self.fake.bot_messages(self.mods) if m.text.startswith(heading)), None)

        await self.fake.wait_for(lambda: find() is not None, what=f"the notification of #{handoff_id}")
        found = find()
        assert found is not None
        return found

    async def answer(self, query_id: str) -> dict[str, Any]:
        """What the moderator who pressed a button was told."""
        await self.fake.wait_for(lambda: query_id in self.fake.callback_answers, what="the press answered")
        return self.fake.callback_answers[query_id]

    async def in_chat(self, chat: FakeChat, text: str, thread_id: int | None = None) -> FakeMessage:
        return await self.telegram.final(chat, text, thread_id)

    def logged_files(self) -> list[FakeMessage]:
        return [m for m in self.fake.bot_messages(self.log, self.log_thread) if m.document is not None]

    async def until(self, check: Callable[[], Awaitable[bool]], what: str, within: float = 5.0) -> None:
        """Wait for a condition of the database, which no message shows (a note, a topic's place)."""
        deadline = asyncio.get_running_loop().time() + within
        while not await check():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)

    async def noted(self, handoff_id: int, text: str) -> None:
        """Wait until `text` is an internal note of the case."""

        async def found() -> bool:
            async with self.telegram.db() as session:
                return (
                    await session.scalar(
                        select(TranscriptEntry.id)
                        .join(Handoff, Handoff.conversation_id == TranscriptEntry.conversation_id)
                        .where(
                            Handoff.id == handoff_id, TranscriptEntry.internal, TranscriptEntry.text == text
                        )
                    )
                    is not None
                )

        await self.until(found, f"the note {text!r}")

    async def placed(self, handoff_id: int) -> None:
        """Wait until the case's topic leads back to it (stored just after the notification is posted)."""

        async def stored() -> bool:
            return "telegram" in (await self.handoff(handoff_id)).notification_refs

        await self.until(stored, f"the topic of #{handoff_id} stored")

    async def handoff(self, handoff_id: int) -> Handoff:
        async with self.telegram.db() as session:
            return await session.get_one(Handoff, handoff_id)


@asynccontextmanager
async def desk_running(
    db: async_sessionmaker[AsyncSession],
    *,
    forum: bool = True,
    log_topic: bool = False,
    fake: FakeTelegram | None = None,
    budgets: dict[str, Any] = QUICK,
    policy: HandoffPolicy = HANDOFF_POLICY,
    **handoff: Any,
) -> AsyncIterator[Desk]:
    fake = fake or FakeTelegram(limits=ROOMY)
    mods = fake.group("Moderators", forum=forum)
    log, log_thread = (mods, fake.open_topic(mods, "Log")) if log_topic else (fake.group("Log"), None)
    maya, sam = fake.user("Maya", "maya_mod"), fake.user("Sam")
    fake.join(mods, maya, "administrator")
    fake.join(mods, sam)
    clock = Clock()
    config = {
        "chat_id": mods.id,
        "mention": ("@maya_mod", sam.id),
        "log_chat_id": log.id,
        "log_thread_id": log_thread,
        **handoff,
    }
    async with running(db, fake, clock=clock, handoff_policy=policy, handoff=config, **budgets) as telegram:
        yield Desk(telegram, mods, log, log_thread, maya, sam, clock)


@pytest.fixture
async def desk(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Desk]:
    async with desk_running(db) as running_desk:
        yield running_desk


async def ask_for_human(desk: Desk, name: str = "Uma") -> tuple[FakeUser, FakeChat, int]:
    """A Telegram user asks for a human in a private chat; returns them, their chat and the handoff id."""
    fake = desk.fake
    user = fake.user(name)
    chat = fake.private_chat(user)
    fake.say(chat, user, "/human")
    await desk.in_chat(chat, Notices.handoff_requested)
    async with desk.telegram.db() as session:
        handoff_id = await session.scalar(
            select(Handoff.id).join(Conversation).where(Conversation.chat_id == str(chat.id))
        )
    assert handoff_id is not None
    return user, chat, handoff_id


def topic_of(desk: Desk, message: FakeMessage) -> int:
    assert message.thread_id is not None and (desk.mods.id, message.thread_id) in desk.fake.topics
    return message.thread_id


def assert_clean(fake: FakeTelegram, *, refused: int = 0) -> None:
    assert fake.refusals(429) == [], fake.flood.refused
    assert fake.not_modified == 0
    assert len(fake.refusals(400)) == refused, fake.refusals(400)


@pytest.mark.e2e
@sqlite_only
async def test_notification_carries_everything_escaped_with_buttons_mention_and_jump_link(desk: Desk) -> None:
    fake = desk.fake
    zoe = fake.user("Zoë <Admin> & Co")
    support = fake.group("Support", forum=True)
    topic = fake.open_topic(support, "Billing")
    fake.say(support, zoe, "@switchboard_bot hello <b>&", thread_id=topic)
    await desk.in_chat(support, "scripted: hello <b>& (#1)", topic)
    fake.say(support, zoe, "/human", thread_id=topic)
    await desk.in_chat(support, Notices.handoff_requested, topic)

    note = await desk.notification(1)
    assert note.text.splitlines() == [
        "🆘 Handoff #1 · telegram",
        f"User: Zoë <Admin> & Co (id {zoe.id})",
        "Reason: the user asked for a human",
        "Status: ⏳ waiting",
        "Open the conversation",
        "",
        "Recent messages",
        "user: hello <b>&",
        "agent: scripted: hello <b>& (#1)",
        "",
        "@maya_mod moderator",
    ]
    links = {e["url"] for e in note.entities if e["type"] == "text_link"}
    assert links == {
        f"https://t.me/c/{str(support.id).removeprefix('-100')}/{topic}",
        f"tg://user?id={desk.sam.id}",
    }
    assert "expandable_blockquote" in {e["type"] for e in note.entities}
    assert [(b["text"], b["callback_data"]) for b in note.buttons] == [
        ("🙋 Claim", "hd:claim:1"),
        ("✅ Resolve", "hd:resolve:1"),
        ("↩️ Return to bot", "hd:return:1"),
    ]
    assert fake.topics[(desk.mods.id, topic_of(desk, note))] == "#1 Zoë <Admin> & Co · telegram"
    logged = await desk.in_chat(
        desk.log,
        f"📋 handoff #1 requested: the user asked for a human\ntelegram user Zoë <Admin> & Co ({zoe.id})",
    )
    assert logged.thread_id is None
    assert_clean(fake)


def test_a_notification_always_fits_in_one_message() -> None:
    huge = "😀<&>" * 3000
    view = HandoffView(
        handoff_id=7,
        status=HandoffStatus.REQUESTED,
        platform="discord",
        user_name=huge,
        user_id="42",
        reason=huge,
        recent=tuple(("user", f"{n}: {huge}") for n in range(50)),
        jump_url="https://discord.com/channels/1/2",
        claimed_by_name=None,
        closed_by=None,
        escalated=False,
    )
    text, _entities = read_html(notification(view, "@maya_mod " * 20))
    assert utf16_length(text) <= 4096
    assert "49: 😀<&>" in text and "0: 😀<&>" not in text  # the newest entries are the ones kept
    assert "\n…\n" in text


def test_jump_links_exist_only_for_forum_topics() -> None:
    def conversation(platform: str, chat_id: str, thread_id: str) -> Conversation:
        return Conversation(platform=platform, chat_id=chat_id, thread_id=thread_id)

    assert jump_link(conversation("telegram", "-1001234567890", "55")) == "https://t.me/c/1234567890/55"
    assert jump_link(conversation("telegram", "-1001234567890", "")) is None  # no message id to link to
    assert jump_link(conversation("telegram", "4242", "")) is None  # a private chat with the bot
    assert jump_link(conversation("discord", "-1001234567890", "55")) is None


def test_the_desk_config_refuses_a_desk_nobody_could_serve() -> None:
    with pytest.raises(ValidationError, match="nobody could take handoffs"):
        TelegramDeskConfig(chat_id=-100, members_are_moderators=False)
    with pytest.raises(ValidationError, match="log_thread_id needs log_chat_id"):
        TelegramDeskConfig(chat_id=-100, log_thread_id=3)
    with pytest.raises(ValidationError):
        TelegramDeskConfig(chat_id=-100, mention=("maya",))  # not an @username


@pytest.mark.e2e
@sqlite_only
async def test_claim_then_both_ways_in_order_then_resolve_with_the_transcript_logged(desk: Desk) -> None:
    fake, maya, sam = desk.fake, desk.maya, desk.sam
    uma, chat, handoff_id = await ask_for_human(desk)
    note = await desk.notification(handoff_id)
    topic = topic_of(desk, note)

    fake.say(chat, uma, "is anyone there?")
    await desk.in_chat(desk.mods, "💬 Uma: is anyone there?", topic)
    await desk.in_chat(chat, Notices.handoff_pending)

    answer = await desk.answer(fake.press(note, f"hd:claim:{handoff_id}", maya))
    assert answer["text"] == DeskReplies.claimed.format(id=handoff_id) and answer["show_alert"] == "false"
    await desk.in_chat(chat, UserNotices.claimed.format(name="Maya"))
    assert "Status: 🙋 claimed by Maya" in note.text and "@maya_mod" not in note.text
    assert [b["callback_data"] for b in note.buttons] == [
        f"hd:resolve:{handoff_id}",
        f"hd:return:{handoff_id}",
    ]

    for text in ("Hi, I am Maya.", "How can I help?", "Take your time."):
        fake.say(desk.mods, maya, text, thread_id=topic)
    for text in ("my invoice is wrong", "it says 200 <EUR>", "instead of 100"):
        fake.say(chat, uma, text)
    await desk.in_chat(chat, "Maya (moderator): Take your time.")
    await desk.in_chat(desk.mods, "💬 Uma: instead of 100", topic)
    assert [m.text for m in fake.bot_messages(chat)][-3:] == [
        "Maya (moderator): Hi, I am Maya.",
        "Maya (moderator): How can I help?",
        "Maya (moderator): Take your time.",
    ]
    assert [m.text for m in fake.bot_messages(desk.mods, topic)][-3:] == [
        "💬 Uma: my invoice is wrong",
        "💬 Uma: it says 200 <EUR>",
        "💬 Uma: instead of 100",
    ]

    fake.say(desk.mods, sam, "I can take over", thread_id=topic)  # a moderator, but not the claimer
    await desk.noted(handoff_id, "I can take over")  # a note, with no answer in the topic
    assert "I can take over" not in " ".join(m.text for m in fake.bot_messages(chat))
    assert [m.text for m in fake.bot_messages(desk.mods, topic)][-1] == "💬 Uma: instead of 100"

    answer = await desk.answer(fake.press(note, f"hd:resolve:{handoff_id}", maya))
    assert answer["text"] == DeskReplies.resolved.format(id=handoff_id)
    await desk.in_chat(chat, UserNotices.resolved)
    assert "Status: ✅ resolved by Maya" in note.text and note.buttons == []
    assert (desk.mods.id, topic) in fake.closed_topics
    (transcript,) = desk.logged_files()
    assert transcript.text.startswith(f"📋 handoff #{handoff_id} resolved by Maya (claimed by Maya)")
    assert transcript.document is not None and transcript.document.file_name == f"handoff-{handoff_id}.txt"
    body = (transcript.document.content or b"").decode()
    assert "claimed by Maya; resolved by Maya" in body
    for line in (
        "user: is anyone there?",
        f"moderator telegram:{maya.id}: Hi, I am Maya.",
        "it says 200 <EUR>",
    ):
        assert line in body
    assert f"moderator telegram:{sam.id} (internal note): I can take over" in body

    fake.say(chat, uma, "thanks!")
    await desk.in_chat(chat, "scripted: thanks! (#1)")  # back with the assistant
    assert [turn.text for turn in desk.telegram.agent.turns] == ["thanks!"]
    assert_clean(fake)


@pytest.mark.e2e
async def test_simultaneous_claims_have_one_winner_and_the_other_is_told_who(desk: Desk) -> None:
    fake, maya, sam = desk.fake, desk.maya, desk.sam
    _, chat, handoff_id = await ask_for_human(desk)
    note = await desk.notification(handoff_id)
    data = f"hd:claim:{handoff_id}"
    presses = {fake.press(note, data, maya): "Maya", fake.press(note, data, sam): "Sam"}
    answers = {presses[query]: await desk.answer(query) for query in presses}

    (winner,) = [name for name, answer in answers.items() if answer["show_alert"] == "false"]
    (loser,) = set(answers) - {winner}
    assert answers[winner]["text"] == DeskReplies.claimed.format(id=handoff_id)
    assert answers[loser]["text"] == DeskReplies.already_claimed.format(name=winner)
    assert answers[loser]["show_alert"] == "true"
    assert (await desk.handoff(handoff_id)).claimed_by_name == winner
    await desk.in_chat(chat, UserNotices.claimed.format(name=winner))
    assert f"claimed by {winner}" in note.text
    joined = [m for m in fake.bot_messages(chat) if m.text.endswith("has joined the conversation.")]
    assert len(joined) == 1
    assert_clean(fake)


@pytest.mark.e2e
@sqlite_only
async def test_outsiders_of_the_moderator_chat_cannot_claim(desk: Desk) -> None:
    fake = desk.fake
    eve, mallory = fake.user("Eve"), fake.user("Mallory")
    fake.join(desk.mods, mallory, "kicked")
    _, _, handoff_id = await ask_for_human(desk)
    note = await desk.notification(handoff_id)
    for outsider in (eve, mallory, eve):
        answer = await desk.answer(fake.press(note, f"hd:claim:{handoff_id}", outsider))
        assert (answer["text"], answer["show_alert"]) == (DeskReplies.not_moderator, "true")
    assert (await desk.handoff(handoff_id)).status is HandoffStatus.REQUESTED
    assert fake.count("getChatMember") == 2  # Eve's second press was answered from the cache
    assert_clean(fake)


@pytest.mark.e2e
@sqlite_only
async def test_with_a_moderator_list_only_listed_users_can_claim_or_write(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with desk_running(db, members_are_moderators=False, moderators=(4242,)) as desk:
        fake = desk.fake
        _, chat, handoff_id = await ask_for_human(desk)
        note = await desk.notification(handoff_id)
        topic = topic_of(desk, note)
        answer = await desk.answer(fake.press(note, f"hd:claim:{handoff_id}", desk.sam))
        assert (answer["text"], answer["show_alert"]) == (DeskReplies.not_moderator, "true")
        fake.say(desk.mods, desk.sam, "hello user", thread_id=topic)
        await desk.in_chat(desk.mods, DeskReplies.not_moderator, topic)
        boss = FakeUser(4242, "Boss")
        answer = await desk.answer(fake.press(note, f"hd:claim:{handoff_id}", boss))
        assert answer["text"] == DeskReplies.claimed.format(id=handoff_id)
        await desk.in_chat(chat, UserNotices.claimed.format(name="Boss"))
        assert fake.count("getChatMember") == 0
        assert "hello user" not in " ".join(m.text for m in fake.bot_messages(chat))
        assert_clean(fake)


@pytest.mark.e2e
@sqlite_only
async def test_escalation_pings_once_and_expiry_closes_for_a_user_on_another_platform(desk: Desk) -> None:
    """The user is on the console: the desk reaches them only through the service."""
    fake, clock, handoffs = desk.fake, desk.clock, desk.telegram.handoffs
    console = RecordingSurface()
    desk.telegram.others["c1"] = console
    await desk.telegram.relay.handle(inbound("my order is late"), console)
    await desk.telegram.relay.request_human(inbound("/human"), console, reason="order <late> & lost")
    note = await desk.notification(1)
    topic = topic_of(desk, note)
    assert note.text.startswith("🆘 Handoff #1 · console\nUser: User u1 (id u1)\nReason: order <late> & lost")
    assert "Open the conversation" not in note.text  # the console has no links
    await desk.telegram.relay.handle(inbound("hello?"), console)
    await desk.in_chat(desk.mods, "💬 User u1: hello?", topic)

    clock.now += timedelta(minutes=4)
    await handoffs.tick()
    await handoffs.tick()
    assert "Status: ⏰ still waiting, escalated" in note.text and "@maya_mod" in note.text
    ping = "⏰ Handoff #1 is still waiting for a moderator. @maya_mod moderator"
    pings = [m for m in fake.bot_messages(desk.mods, topic) if m.text == ping]
    assert len(pings) == 1
    assert {e["url"] for e in pings[0].entities} == {f"tg://user?id={desk.sam.id}"}

    clock.now += timedelta(minutes=7)
    await handoffs.tick()
    assert "Status: ⌛ expired: nobody claimed it in time" in note.text and note.buttons == []
    assert (desk.mods.id, topic) in fake.closed_topics
    assert console.visible_texts()[-1] == UserNotices.expired
    assert_clean(fake)


@pytest.mark.e2e
@sqlite_only
async def test_a_restart_while_claimed_keeps_buttons_and_the_topic_working(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with desk_running(db, log_topic=True) as desk:  # the log is a topic of the moderators' forum
        fake, maya = desk.fake, desk.maya
        uma, chat, handoff_id = await ask_for_human(desk)
        note = await desk.notification(handoff_id)
        topic = topic_of(desk, note)
        await desk.answer(fake.press(note, f"hd:claim:{handoff_id}", maya))
        await desk.in_chat(chat, UserNotices.claimed.format(name="Maya"))

        await desk.telegram.restart()  # new bridge, relay, service and desk: only the database remains
        fake.say(desk.mods, maya, "noted in the log", thread_id=desk.log_thread)  # no handoff's topic
        fake.say(chat, uma, "still there?")
        await desk.in_chat(desk.mods, "💬 Uma: still there?", topic)
        fake.say(desk.mods, maya, "Yes, still here.", thread_id=topic)
        await desk.in_chat(chat, "Maya (moderator): Yes, still here.")
        returned = fake.press(note, f"hd:return:{handoff_id}", maya)
        resolved = fake.press(note, f"hd:resolve:{handoff_id}", desk.sam)  # at the same moment: too late
        assert (await desk.answer(returned))["text"] == DeskReplies.returned.format(id=handoff_id)
        assert (await desk.answer(resolved))["text"] == DeskReplies.closed
        await desk.in_chat(chat, UserNotices.returned)
        assert "Status: ↩️ returned to the assistant by Maya" in note.text

        (transcript,) = desk.logged_files()
        assert transcript.text.startswith(f"📋 handoff #{handoff_id} returned by Maya (claimed by Maya)")
        assert transcript.document is not None and transcript.document.content is not None
        assert "Yes, still here." in transcript.document.content.decode()
        in_log = fake.bot_messages(desk.mods, desk.log_thread)
        assert [m.text.partition(":")[0] for m in in_log] == [
            f"📋 handoff #{handoff_id} requested",
            f"📋 handoff #{handoff_id} claimed by Maya\ntelegram user Uma ({uma.id})",
            f"📋 handoff #{handoff_id} returned by Maya (claimed by Maya)\ntelegram user Uma ({uma.id})",
        ]
        assert_clean(fake)


@pytest.mark.e2e
@sqlite_only
async def test_without_topics_handoffs_are_followed_up_as_replies(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with desk_running(db, forum=False) as desk:
        fake, maya = desk.fake, desk.maya
        uma, chat, first = await ask_for_human(desk)
        _, _, second = await ask_for_human(desk, "Vic")
        note = await desk.notification(first)
        assert note.thread_id is None and note.text.startswith(f"🆘 Handoff #{first} · telegram")
        await desk.notification(second)
        assert fake.count("createForumTopic") == 1  # refused once, then not asked again

        fake.say(chat, uma, "hello?")
        relayed = await desk.in_chat(desk.mods, f"💬 #{first} Uma: hello?")
        assert relayed.reply_to is note
        await desk.answer(fake.press(note, f"hd:claim:{first}", maya))
        fake.say(desk.mods, maya, "Hi Uma", reply_to=relayed)  # a reply to the user's message
        await desk.in_chat(chat, "Maya (moderator): Hi Uma")
        fake.say(desk.mods, maya, "And more", reply_to=note)  # or to the notification
        await desk.in_chat(chat, "Maya (moderator): And more")
        fake.say(desk.mods, maya, "just chatting with the team")  # a reply to nothing: stays here
        fake.say(desk.mods, maya, "Bye Uma", reply_to=relayed)
        await desk.in_chat(chat, "Maya (moderator): Bye Uma")
        assert "just chatting" not in " ".join(m.text for m in fake.bot_messages(chat))

        await desk.answer(fake.press(note, f"hd:resolve:{first}", maya))
        await desk.in_chat(chat, UserNotices.resolved)
        assert fake.count("closeForumTopic") == 0
        (refused,) = fake.refusals(400)
        assert refused.method == "createForumTopic" and refused.description == "the chat is not a forum"
        assert_clean(fake, refused=1)


@pytest.mark.e2e
@pytest.mark.slow
@sqlite_only
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB's own RetryAfter
async def test_a_busy_desk_is_paced_below_flood_control(db: async_sessionmaker[AsyncSession]) -> None:
    """Four requests at once need eight posts in the moderator chat, twice what the group allows in a
    window: the shared budgets spread them out and Telegram never answers 429. (The group's window is
    half a second here instead of a minute, for the fake and the bot alike.)"""
    strict = FakeTelegram(limits=Limits(per_chat=Limit(30.0, 1.0, 30.0), per_group=Window(4, 0.5)))
    budgets = {**QUICK, "group_messages": 4, "group_window_seconds": 0.5}
    async with desk_running(db, fake=strict, budgets=budgets, log_chat_id=None) as desk:
        fake = desk.fake
        users = [fake.user(f"User {n}") for n in range(4)]
        for user in users:
            fake.say(fake.private_chat(user), user, "/human")
        for handoff_id in range(1, 5):
            note = await desk.notification(handoff_id)
            assert note.buttons
        assert len(fake.topics) == 4
        assert_clean(fake)


async def test_a_day_of_desk_tools_in_a_topic(desk: Desk) -> None:
    """Notes, snippets, an anonymous reply, a transfer by reply, a scheduled close, history and search,
    as moderators type them in a case's topic; an outsider is refused there."""
    fake, maya, sam = desk.fake, desk.maya, desk.sam
    uma, chat, handoff_id = await ask_for_human(desk)
    note = await desk.notification(handoff_id)
    topic = topic_of(desk, note)
    await desk.placed(handoff_id)
    await desk.answer(fake.press(note, f"hd:claim:{handoff_id}", maya))
    await desk.in_chat(chat, UserNotices.claimed.format(name="Maya"))

    fake.say(desk.mods, maya, "/note VIP customer", thread_id=topic)
    await desk.in_chat(desk.mods, DeskWords.noted, topic)
    fake.say(desk.mods, maya, "/snippet add refund Refunds take 5 days.", thread_id=topic)
    await desk.in_chat(desk.mods, DeskWords.snippet_saved.format(name="refund"), topic)
    fake.say(desk.mods, maya, "/asnippet refund", thread_id=topic)
    await desk.in_chat(chat, "Staff: Refunds take 5 days.")
    fake.say(desk.mods, maya, "/areply Anything else?", thread_id=topic)
    await desk.in_chat(chat, "Staff: Anything else?")

    samsays = fake.say(desk.mods, sam, "I know this one", thread_id=topic)
    fake.say(desk.mods, maya, "/transfer", thread_id=topic, reply_to=samsays)
    await desk.in_chat(desk.mods, DeskWords.transferred.format(id=handoff_id, name="Sam"), topic)
    await desk.in_chat(chat, CaseNotices.transferred_to.format(name="Sam"))
    assert "claimed by Sam" in note.text
    fake.say(desk.mods, sam, "/close in 30m waiting for the receipt", thread_id=topic)
    await desk.in_chat(desk.mods, DeskWords.close_scheduled.format(id=handoff_id, delay="30 minutes"), topic)
    desk.clock.now += timedelta(minutes=31)
    await desk.telegram.relay.handoffs.tick()
    await desk.in_chat(chat, UserNotices.resolved)
    assert (await desk.handoff(handoff_id)).close_reason == "waiting for the receipt"

    fake.say(chat, uma, "/human")
    await desk.in_chat(chat, Notices.handoff_requested)
    second = await desk.notification(handoff_id + 1)
    assert "Earlier cases: 1" in second.text
    topic2 = topic_of(desk, second)
    await desk.placed(handoff_id + 1)
    fake.say(desk.mods, maya, "/history", thread_id=topic2)
    await desk.fake.wait_for(
        lambda: any(
            m.text.startswith(DeskWords.history_head.format(user="Uma", count=1))
            and "waiting for the receipt" in m.text
            for m in fake.bot_messages(desk.mods, topic2)
        ),
        what="the history answer",
    )
    fake.say(desk.mods, maya, "/search receipt", thread_id=topic2)
    await desk.fake.wait_for(
        lambda: any(
            m.text.startswith(DeskWords.found_head) and f"#{handoff_id} " in m.text
            for m in fake.bot_messages(desk.mods, topic2)
        ),
        what="the search answer",
    )
    outsider = fake.user("Olga")
    fake.join(desk.mods, outsider, "left")
    fake.say(desk.mods, outsider, "/note hi", thread_id=topic2)
    await desk.in_chat(desk.mods, DeskWords.not_moderator, topic2)
