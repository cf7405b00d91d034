"""Handoffs across platforms end to end: a user on one platform served by a moderator on the other.

Everything bot.py's `run()` builds for one process runs here in process: one Relay and one HandoffService
on the database, both platform bridges (the real discord.py and python-telegram-bot clients against their
loopback fakes) with their desks, and real provider backends (Convocore over WebSocket, Voiceflow over
socket.io) against theirs. Each platform desk sees every handoff; the tests act on one and check the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace

import pytest
from discord.utils import escape_markdown
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Agent
from agents.convocore_ws import ConvocoreWsAgent, ConvocoreWsSettings
from agents.voiceflow import VoiceflowAgent, VoiceflowSettings
from bridges.deliveries import MAX_REFUSALS
from bridges.discord.bridge import DiscordBridge
from bridges.discord.config import DiscordDeskConfig
from bridges.handoff import HandoffService
from bridges.handoff_notices import UserNotices
from bridges.relay import Notices, Relay
from bridges.surface import Surface
from bridges.telegram.bridge import TelegramBridge
from bridges.telegram.desk import DeskReplies as TelegramDeskReplies
from fakes.convocore_ws import Chunk, Close, FakeConvocore, handoff
from fakes.discord import FakeChannel, FakeDiscord, FakeMessage, FakeUser
from fakes.telegram import FakeChat, FakeTelegram
from fakes.telegram import FakeMessage as TelegramMessage
from fakes.telegram import FakeUser as TelegramUser
from fakes.telegram.harness import HANDOFF_POLICY, POLICY, bridge
from fakes.telegram.markup import utf16_length
from fakes.voiceflow import WELCOME_BACK, FakeVoiceflow, Trace, text
from models import Conversation, Handoff, PendingDelivery
from tests.agent_support import FAST_RETRIES
from tests.discord_support import discord_config
from tests.test_discord import WINDOW
from tests.test_discord_desk import EPHEMERAL, fields
from tests.test_telegram_desk import QUICK, ROOMY

pytestmark = pytest.mark.e2e


@dataclass
class Platforms:
    """The four loopback services and the people on them."""

    discord: FakeDiscord
    mods: FakeChannel
    """The Discord desk channel; `log` is the Discord log channel."""
    log: FakeChannel
    moderators: int
    maya: FakeUser
    """A Discord moderator (has the moderator role)."""
    alice: FakeUser
    """A Discord user."""
    telegram: FakeTelegram
    telegram_url: str
    tg_mods: FakeChat
    """The Telegram desk: a forum supergroup whose members are moderators."""
    tg_log: FakeChat
    sam: TelegramUser
    """A Telegram moderator (admin of the desk group)."""
    convocore: FakeConvocore
    voiceflow: FakeVoiceflow


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    telegram = FakeTelegram(limits=ROOMY)
    async with (
        FakeDiscord(message_window=WINDOW) as discord,
        telegram.running() as telegram_url,
        FakeConvocore() as convocore,
        FakeVoiceflow() as voiceflow,
    ):
        guild = discord.add_guild("Support", discord.add_user("owner"))
        moderators = discord.add_role(guild, "Moderators")
        maya, alice = discord.add_user("maya"), discord.add_user("alice")
        discord.add_member(guild, maya, (moderators,))
        discord.add_member(guild, alice)
        mods, log = (discord.add_text_channel(guild, name) for name in ("mods", "handoff-log"))
        tg_mods, tg_log = telegram.group("Moderators", forum=True), telegram.group("Log")
        sam = telegram.user("Sam")
        telegram.join(tg_mods, sam, "administrator")
        yield Platforms(
            discord=discord,
            mods=mods,
            log=log,
            moderators=moderators,
            maya=maya,
            alice=alice,
            telegram=telegram,
            telegram_url=telegram_url,
            tg_mods=tg_mods,
            tg_log=tg_log,
            sam=sam,
            convocore=convocore,
            voiceflow=voiceflow,
        )
        assert convocore.rejections == [] and voiceflow.rejections == [], "a provider refused a request"
        assert telegram.refusals(429) == [] and discord.rate_limited == 0


class App:
    """bot.py's `run()` in process: one Relay and HandoffService serving both bridges and both desks.

    `restart` builds all of it anew on the same database, as a new process would."""

    def __init__(
        self, platforms: Platforms, db: async_sessionmaker[AsyncSession], default_agent: str
    ) -> None:
        self.p, self.db, self.default_agent = platforms, db, default_agent
        self.relay_policy = replace(POLICY, default_agent=default_agent)
        self.handoff_policy = HANDOFF_POLICY
        """Kept across restarts; a test may change either before `start`."""
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        p = self.p
        agents: dict[str, Agent] = {
            "convocore": ConvocoreWsAgent(
                "convocore",
                ConvocoreWsSettings(
                    agent_id=p.convocore.agent_id,
                    owner_id=p.convocore.owner_id,
                    api_key=SecretStr(p.convocore.secret),
                    url=p.convocore.url,
                    **FAST_RETRIES,
                ),
            ),
            "voiceflow": VoiceflowAgent(
                "voiceflow",
                VoiceflowSettings(
                    runtime_url=p.voiceflow.url,
                    socketio_path=p.voiceflow.path,
                    api_key=SecretStr(p.voiceflow.api_key),
                    project_id=p.voiceflow.project_id,
                    **FAST_RETRIES,
                ),
            ),
        }
        for agent in agents.values():
            await self._stack.enter_async_context(agent)
        self.handoffs = HandoffService(
            self.db, self.handoff_policy, surfaces=self._surface_for, jump_link=self._jump_link
        )
        relay = Relay(self.db, agents, self.relay_policy, handoffs=self.handoffs)
        self.discord = DiscordBridge(
            discord_config(
                p.discord,
                message_content_intent=True,
                handoff=DiscordDeskConfig(
                    channel=p.mods.id, moderator_roles=(p.moderators,), log_channel=p.log.id
                ),
            ),
            relay,
        )
        self.telegram = bridge(
            p.telegram,
            p.telegram_url,
            relay,
            handoff={"chat_id": p.tg_mods.id, "log_chat_id": p.tg_log.id},
            **QUICK,
        )
        self.bridges: dict[str, DiscordBridge | TelegramBridge] = {
            "discord": self.discord,
            "telegram": self.telegram,
        }
        for platform_bridge in self.bridges.values():
            self._stack.push_async_callback(platform_bridge.close, 1.0)
            await platform_bridge.start()
            assert platform_bridge.desk is not None
            self.handoffs.desks.append(platform_bridge.desk)

    async def close(self) -> None:
        await self._stack.aclose()

    async def restart(self) -> None:
        await self.close()
        await self.start()

    def _surface_for(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        found = self.bridges.get(platform)
        return found.surface_for(platform, chat_id, thread_id) if found else None

    def _jump_link(self, conversation: Conversation) -> str | None:
        found = self.bridges.get(conversation.platform)
        return found.jump_link(conversation) if found else None

    async def handoff(self) -> Handoff:
        async with self.db() as session:
            found = (await session.scalars(select(Handoff).order_by(Handoff.id.desc()))).first()
        assert found is not None
        return found

    async def discord_notification(self) -> tuple[FakeMessage, FakeChannel]:
        """The Discord desk's notification of the handoff, and the thread started on it."""
        fake = self.p.discord
        note = await fake.wait_until(
            lambda: next((m for m in fake.bot_messages(self.p.mods) if m.embeds), None),
            what="the Discord notification",
        )
        return note, await fake.wait_until(lambda: fake.channels.get(note.id), what="the handoff thread")

    async def telegram_notification(self, handoff_id: int) -> tuple[TelegramMessage, int]:
        """The Telegram desk's notification of the handoff, and its forum topic."""
        fake, heading = self.p.telegram, f"🆘 Handoff #{handoff_id} "

        def find() -> TelegramMessage | None:
            return next((m for m in fake.bot_messages(self.p.tg_mods) if m.text.startswith(heading)), None)

        await fake.wait_for(lambda: find() is not None, what="the Telegram notification")
        note = find()
        assert note is not None and note.thread_id is not None
        return note, note.thread_id

    async def discord_press(self, note: FakeMessage, action: str, user: FakeUser) -> str:
        """Press a Discord desk button; returns what only the presser is told."""
        custom_id = f"sbh:{action}:{(await self.handoff()).id}"
        answer = await self.p.discord.answer(await self.p.discord.press(note, custom_id, user))
        assert answer.flags & EPHEMERAL
        return answer.content

    async def telegram_press(self, note: TelegramMessage, action: str, user: TelegramUser) -> str:
        """Press a Telegram desk button; returns the answer to the callback query."""
        fake = self.p.telegram
        query = fake.press(note, f"hd:{action}:{(await self.handoff()).id}", user)
        await fake.wait_for(lambda: query in fake.callback_answers, what="the press answered")
        return str(fake.callback_answers[query]["text"])


@pytest.fixture
async def convocore_app(platforms: Platforms, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    app = App(platforms, db, default_agent="convocore")
    await app.start()
    yield app
    await app.close()


@pytest.fixture
async def voiceflow_app(platforms: Platforms, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    app = App(platforms, db, default_agent="voiceflow")
    await app.start()
    yield app
    await app.close()


def discord_texts(fake: FakeDiscord, channel: FakeChannel) -> list[str]:
    return [m.content for m in fake.bot_messages(channel)]


def telegram_texts(fake: FakeTelegram, chat: FakeChat, thread_id: int | None = None) -> list[str]:
    return [m.text for m in fake.bot_messages(chat, thread_id)]


async def telegram_shows(
    fake: FakeTelegram, chat: FakeChat, expected: list[str], thread_id: int | None = None
) -> None:
    """Until the bot's latest messages there read `expected`, in that order."""
    await fake.wait_for(
        lambda: telegram_texts(fake, chat, thread_id)[-len(expected) :] == expected,
        within=10,
        what=f"the last bot messages reading {expected}",
    )


async def convocore_user_asks_for_a_human(app: App) -> tuple[TelegramUser, FakeChat, list[str]]:
    """Uma, in a private chat with the Telegram bot, is handed over by the Convocore agent."""
    p = app.p
    uma = p.telegram.user("Uma")
    chat = p.telegram.private_chat(uma)
    p.convocore.script(Chunk("Let me find a person for you."), handoff("billing dispute"), Close())
    p.telegram.say(chat, uma, "I was charged twice")
    seen = ["Let me find a person for you.", Notices.handoff_requested]
    await telegram_shows(p.telegram, chat, seen)
    return uma, chat, seen


@pytest.mark.slow
async def test_a_convocore_handoff_from_telegram_is_served_from_discord_and_back(convocore_app: App) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    uma, chat, seen = await convocore_user_asks_for_a_human(app)
    handoff_id = (await app.handoff()).id

    note, thread = await app.discord_notification()
    assert fields(note) == {
        "Platform": "telegram",
        "User": f"Uma ({uma.id})",
        "Status": "Waiting for a moderator",
        "Reason": "billing dispute",
    }
    assert "url" not in note.embeds[0]  # a private chat with the bot has nothing to jump to
    tg_note, topic = await app.telegram_notification(handoff_id)  # the other desk sees it too

    claimed = await app.discord_press(note, "claim", p.maya)
    assert claimed.startswith(f"You claimed handoff #{handoff_id}.")
    seen.append(UserNotices.claimed.format(name="maya"))
    await telegram_shows(telegram, chat, seen)
    await telegram.wait_for(
        lambda: "Status: 🙋 claimed by maya" in tg_note.text, what="the Telegram desk updated"
    )

    for words in ("Hi Uma, Maya here.", "Which order was it?"):
        await discord.user_says(thread, p.maya, words)
    seen += ["maya (moderator): Hi Uma, Maya here.", "maya (moderator): Which order was it?"]
    await telegram_shows(telegram, chat, seen)
    for words in ("order 42", "both on Monday", "thanks"):
        telegram.say(chat, uma, words)
    relayed = ["**Uma:** order 42", "**Uma:** both on Monday", "**Uma:** thanks"]
    await discord.wait_until(
        lambda: discord_texts(discord, thread)[-3:] == relayed, what="Uma's replies in the thread, in order"
    )
    await telegram_shows(
        telegram, p.tg_mods, ["💬 Uma: order 42", "💬 Uma: both on Monday", "💬 Uma: thanks"], topic
    )

    returned = await app.discord_press(note, "return", p.maya)
    assert "is handed back to the assistant" in returned
    seen.append(UserNotices.returned)
    await telegram_shows(telegram, chat, seen)
    logged = await discord.wait_until(
        lambda: next((m for m in discord.bot_messages(p.log) if m.attachments), None), what="the transcript"
    )
    assert logged.content.startswith(f"handoff #{handoff_id} returned by maya (claimed by maya)")
    (attachment,) = logged.attachments
    assert attachment.filename == f"handoff-{handoff_id}.txt"
    for line in (
        "user: I was charged twice",
        "agent: Let me find a person for you.",
        f"moderator discord:{p.maya.id}: Hi Uma, Maya here.",
        "user: both on Monday",
    ):
        assert line in attachment.text
    await telegram.wait_for(
        lambda: "Status: ↩️ returned to the assistant by maya" in tg_note.text, what="closed"
    )

    telegram.say(chat, uma, "is my refund done?")
    await telegram_shows(telegram, chat, [*seen, "echo #2: is my refund done?"])
    assert [r["prompt"] for r in p.convocore.requests] == ["I was charged twice", "is my refund done?"]
    assert len({r["convoId"] for r in p.convocore.requests}) == 1  # the same Convocore session goes on


async def test_a_voiceflow_handoff_from_discord_is_served_from_telegram(voiceflow_app: App) -> None:
    app, p = voiceflow_app, voiceflow_app.p
    discord, telegram, voiceflow = p.discord, p.telegram, p.voiceflow
    dm = discord.dm_channel(p.alice)
    await discord.user_says(dm, p.alice, "hello")
    await discord.wait_until(
        lambda: any(m.content.endswith("echo #1: hello") for m in discord.bot_messages(dm)),
        what="the greeting",
    )
    voiceflow.script(text("Connecting you to a person."), Trace("talk_to_agent", {}))
    await discord.user_says(dm, p.alice, "I need a human")
    seen = ["Connecting you to a person.", Notices.handoff_requested]
    await discord.wait_until(lambda: discord_texts(discord, dm)[-2:] == seen, what="the handoff announced")
    handoff_id = (await app.handoff()).id

    tg_note, topic = await app.telegram_notification(handoff_id)
    heading, user, reason = tg_note.text.splitlines()[:3]
    assert (heading, user) == (f"🆘 Handoff #{handoff_id} · discord", f"User: alice (id {p.alice.id})")
    assert reason.startswith("Reason: the agent asked for a human")
    note, _ = await app.discord_notification()

    assert await app.telegram_press(tg_note, "claim", p.sam) == TelegramDeskReplies.claimed.format(
        id=handoff_id
    )
    seen.append(UserNotices.claimed.format(name="Sam"))
    await discord.wait_until(lambda: discord_texts(discord, dm)[-3:] == seen, what="alice told Sam joined")
    await discord.wait_until(
        lambda: fields(note)["Status"] == "Claimed by Sam", what="the Discord desk updated"
    )

    telegram.say(p.tg_mods, p.sam, "Hello alice, Sam from support.", thread_id=topic)
    seen.append("Sam (moderator): Hello alice, Sam from support.")
    await discord.wait_until(lambda: discord_texts(discord, dm)[-4:] == seen, what="Sam's words in the DM")
    for words in ("my card was charged twice", "can you check?"):
        await discord.user_says(dm, p.alice, words)
    relayed = ["💬 alice: my card was charged twice", "💬 alice: can you check?"]
    await telegram_shows(telegram, p.tg_mods, relayed, topic)

    assert await app.telegram_press(tg_note, "resolve", p.sam) == TelegramDeskReplies.resolved.format(
        id=handoff_id
    )
    seen += [UserNotices.resolved, WELCOME_BACK]
    await discord.wait_until(lambda: discord_texts(discord, dm)[-6:] == seen, what="the agent back in the DM")
    assert voiceflow.actions[-1] == {"type": "continue"}
    assert [a["type"] for a in voiceflow.actions] == ["launch", "text", "text", "continue"]
    await telegram.wait_for(
        lambda: any(m.document is not None for m in telegram.bot_messages(p.tg_log)), what="the transcript"
    )
    (transcript,) = [m for m in telegram.bot_messages(p.tg_log) if m.document is not None]
    assert transcript.text.startswith(f"📋 handoff #{handoff_id} resolved by Sam (claimed by Sam)")
    assert transcript.document is not None and transcript.document.content is not None
    body = transcript.document.content.decode()
    assert f"moderator telegram:{p.sam.id}: Hello alice, Sam from support." in body
    assert "user: can you check?" in body


async def test_a_restart_while_claimed_keeps_the_cross_platform_handoff_working(convocore_app: App) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    uma, chat, seen = await convocore_user_asks_for_a_human(app)
    note, thread = await app.discord_notification()
    tg_note, topic = await app.telegram_notification((await app.handoff()).id)
    await app.discord_press(note, "claim", p.maya)
    seen.append(UserNotices.claimed.format(name="maya"))
    await telegram_shows(telegram, chat, seen)

    await app.restart()  # new bridges, relay, service and agents: only the database remains
    await discord.user_says(thread, p.maya, "Still here after a restart.")
    seen.append("maya (moderator): Still here after a restart.")
    await telegram_shows(telegram, chat, seen)
    telegram.say(chat, uma, "great")
    await discord.wait_until(
        lambda: discord_texts(discord, thread)[-1:] == ["**Uma:** great"], what="Uma in the thread"
    )
    await telegram_shows(telegram, p.tg_mods, ["💬 Uma: great"], topic)  # the restarted Telegram desk too
    resolved = await app.discord_press(note, "resolve", p.maya)
    assert resolved.startswith(f"Handoff #{(await app.handoff()).id} is resolved")
    seen.append(UserNotices.resolved)
    await telegram_shows(telegram, chat, seen)
    assert fields(note)["Status"] == "Resolved by maya (claimed by maya)"
    await telegram.wait_for(lambda: "Status: ✅ resolved by maya" in tg_note.text, what="closed")
    handed_over = [r["prompt"] for r in p.convocore.requests]
    assert handed_over == ["I was charged twice"]  # what was said to the moderator never reached the agent


# -- moderator words that do not fit, or do not arrive ---------------------------------------------------


def long_answer() -> str:
    """About 4,500 characters a moderator might write: paragraphs of sentences, with emoji (two UTF-16
    units each, as Telegram counts) and accented letters."""
    paragraphs = [
        " ".join(
            f"Step {p}.{n}: I checked payment {p * 100 + n} with the bank 🏦 and it is fine, café included."
            for n in range(1, 9)
        )
        for p in range(1, 8)
    ]
    text = "\n\n".join(paragraphs)
    assert 4400 <= len(text) <= 4700, len(text)
    return text


async def discord_user_asks_for_a_human(app: App) -> FakeChannel:
    """Alice, in a DM with the Discord bot, is handed over by the Convocore agent; returns the DM."""
    p = app.p
    dm = p.discord.dm_channel(p.alice)
    p.convocore.script(Chunk("Let me find a person for you."), handoff("refund"), Close())
    await p.discord.user_says(dm, p.alice, "I want a refund")
    await p.discord.wait_until(
        lambda: discord_texts(p.discord, dm)[-1:] == [Notices.handoff_requested], what="Alice handed over"
    )
    return dm


async def claimed_on_discord(app: App) -> tuple[int, FakeChannel]:
    """Maya claims the newest handoff on the Discord desk; returns its id and its thread."""
    fake, handoff_id = app.p.discord, (await app.handoff()).id
    note = await fake.wait_until(
        lambda: next(
            (
                m
                for m in fake.bot_messages(app.p.mods)
                if m.embeds and m.embeds[0]["title"].endswith(f"#{handoff_id}")
            ),
            None,
        ),
        what=f"the notification of #{handoff_id}",
    )
    thread = await fake.wait_until(lambda: fake.channels.get(note.id), what="the handoff thread")
    assert (await app.discord_press(note, "claim", app.p.maya)).startswith(
        f"You claimed handoff #{handoff_id}"
    )
    return handoff_id, thread


async def test_a_long_answer_reaches_users_on_both_platforms_whole_in_parts_that_fit(
    convocore_app: App,
) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    words = long_answer()
    expected = f"maya (moderator): {words}"

    _, chat, seen = await convocore_user_asks_for_a_human(app)
    _, uma_thread = await claimed_on_discord(app)
    seen.append(UserNotices.claimed.format(name="maya"))
    await telegram_shows(telegram, chat, seen)
    await discord.user_says(uma_thread, p.maya, words)
    # Cut between paragraphs; a message's trailing blank line is not shown on Telegram.
    await telegram.wait_for(
        lambda: "\n\n".join(telegram_texts(telegram, chat)[len(seen) :]) == expected,
        what="the whole answer in Uma's chat",
    )
    parts = telegram_texts(telegram, chat)[len(seen) :]
    assert len(parts) == 2 and all(utf16_length(part) <= 4096 for part in parts)

    dm = await discord_user_asks_for_a_human(app)
    _, alice_thread = await claimed_on_discord(app)
    shown = len(discord_texts(discord, dm))
    await discord.user_says(alice_thread, p.maya, words)
    await discord.wait_until(
        lambda: "".join(discord_texts(discord, dm)[shown:]) == expected, what="the whole answer in Alice's DM"
    )
    parts = discord_texts(discord, dm)[shown:]
    assert len(parts) == 3 and all(len(part) <= 2000 and part.endswith("\n\n") for part in parts[:-1])
    assert not [r for r in discord.requests if r.status == 400]


async def test_a_refused_answer_is_reported_in_the_handoffs_thread_and_topic(convocore_app: App) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    dm = await discord_user_asks_for_a_human(app)
    handoff_id, thread = await claimed_on_discord(app)
    _, topic = await app.telegram_notification(handoff_id)
    discord.refuse(dm)  # Alice no longer accepts messages from the bot
    await discord.user_says(thread, p.maya, "Your refund is approved.")
    report = (
        "⚠️ alice did not get “maya (moderator): Your refund is approved.”. discord refused it: "
        "discord 403 (code 50007). It is kept in the transcript."
    )
    await discord.wait_until(
        lambda: discord_texts(discord, thread)[-1:] == [escape_markdown(report)],
        what="the report in the thread",
    )
    await telegram_shows(telegram, p.tg_mods, [report], topic)  # every desk of the handoff sees it
    assert "maya (moderator): Your refund is approved." not in discord_texts(discord, dm)
    assert "Your refund is approved." in await app.handoffs.transcript(handoff_id)


async def pending(app: App) -> list[PendingDelivery]:
    async with app.db() as session:
        return list(await session.scalars(select(PendingDelivery).order_by(PendingDelivery.id)))


async def test_an_answer_that_fails_for_now_waits_in_order_and_arrives_once_the_platform_works(
    convocore_app: App,
) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    _, chat, seen = await convocore_user_asks_for_a_human(app)
    _, thread = await claimed_on_discord(app)
    seen.append(UserNotices.claimed.format(name="maya"))
    await telegram_shows(telegram, chat, seen)

    telegram.refuse(chat, 502, "Bad Gateway")  # Telegram has trouble for a while
    await discord.user_says(thread, p.maya, "First, sorry for the wait.")
    await discord.user_says(thread, p.maya, "Second, your refund is on its way.")
    queued = await until(lambda items: len(items) == 2, app, what="both answers queued")
    assert [item.text for item in queued] == [
        "maya (moderator): First, sorry for the wait.",
        "maya (moderator): Second, your refund is on its way.",
    ]
    await app.handoffs.tick()  # still failing: both stay, nothing later jumps the queue
    assert [(item.id, item.text, item.refusals) for item in await pending(app)] == [
        (item.id, item.text, 0) for item in queued
    ]
    assert telegram_texts(telegram, chat) == seen

    telegram.refusing.clear()
    await app.handoffs.tick()
    seen += [item.text for item in queued]
    assert telegram_texts(telegram, chat) == seen
    assert await pending(app) == []


async def test_a_queued_answer_the_platform_keeps_refusing_is_given_up_and_reported(
    convocore_app: App,
) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    _, chat, seen = await convocore_user_asks_for_a_human(app)
    _, thread = await claimed_on_discord(app)
    await telegram_shows(telegram, chat, [*seen, UserNotices.claimed.format(name="maya")])
    telegram.refuse(chat, 502, "Bad Gateway")
    await discord.user_says(thread, p.maya, "Are you still there?")
    await until(lambda items: len(items) == 1, app, what="the answer queued")
    telegram.refuse(chat)  # then Uma blocks the bot
    for refused in range(1, MAX_REFUSALS):
        await app.handoffs.tick()
        assert [item.refusals for item in await pending(app)] == [refused]
    await app.handoffs.tick()
    assert await pending(app) == []
    report = (
        "⚠️ Uma did not get “maya (moderator): Are you still there?”. telegram refused it 3 times: "
        "Forbidden: bot was blocked by the user. It is kept in the transcript."
    )
    await discord.wait_until(
        lambda: discord_texts(discord, thread)[-1:] == [escape_markdown(report)],
        what="the report in the thread",
    )


async def until(
    condition: Callable[[list[PendingDelivery]], bool], app: App, *, what: str, within: float = 5.0
) -> list[PendingDelivery]:
    """The queued deliveries, once they satisfy `condition` (the database has no change events to wait
    on, so it is looked at again every few milliseconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition(items := await pending(app)):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}: {items}")
        await asyncio.sleep(0.01)
    return items
