"""Stop and Regenerate on Telegram, end to end: python-telegram-bot against the fake Bot API, a real
OpenAI-compatible agent (httpx) against the fake provider, and the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.http import agent_http_client
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from bridges.controls import ControlNotices
from bridges.render import IN_PROGRESS
from fakes.http import Hang
from fakes.openai import FakeOpenAI, content
from fakes.telegram import FakeChat, FakeTelegram, FakeUser
from fakes.telegram.harness import Telegram, running
from fakes.telegram.state import FakeMessage
from models import Role, TranscriptEntry
from tests.polling import eventually, holds

pytestmark = pytest.mark.e2e

ASK = "@switchboard_bot "


@dataclass
class Scene:
    telegram: Telegram
    provider: FakeOpenAI

    @property
    def fake(self) -> FakeTelegram:
        return self.telegram.fake


@pytest.fixture
async def scene(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Scene]:
    """The chats' agent ("scripted", the harness's default) is an OpenAI-compatible one here."""
    async with AsyncExitStack() as stack:
        provider = await stack.enter_async_context(FakeOpenAI(api_key=None))
        http = await stack.enter_async_context(agent_http_client())
        settings = OpenAICompatSettings(base_url=provider.url, model=provider.model)
        gpt = OpenAICompatAgent("scripted", settings, http)
        telegram = await stack.enter_async_context(running(db, agents={"scripted": gpt}))
        yield Scene(telegram, provider)
        assert provider.rejections == []
        assert telegram.fake.refusals(429) == [] and telegram.fake.not_modified == 0


def data_of(message: FakeMessage) -> list[str]:
    return [str(button.get("callback_data")) for button in message.buttons]


def stop_of(user: FakeUser) -> str:
    return f"sc:stop:{user.id}"


def regenerate_of(user: FakeUser) -> str:
    return f"sc:regen:{user.id}"


async def answered(fake: FakeTelegram, query_id: str) -> str | None:
    """The toast the presser saw (None: the press was acknowledged without one)."""
    await fake.wait_for(lambda: query_id in fake.callback_answers, what="the press answered")
    text = fake.callback_answers[query_id].get("text")
    return str(text) if text else None


async def streaming(fake: FakeTelegram, chat: FakeChat, text: str) -> FakeMessage:
    """The bot's latest message, once it shows `text` still streaming."""
    await fake.wait_for(
        lambda: bool(m := fake.bot_messages(chat)) and m[-1].text == f"{text} {IN_PROGRESS}",
        what=f"{text!r} streaming",
    )
    return fake.bot_messages(chat)[-1]


async def agent_texts(db: async_sessionmaker[AsyncSession], role: Role = Role.AGENT) -> list[str]:
    async with db() as session:
        query = select(TranscriptEntry.text).where(TranscriptEntry.role == role).order_by(TranscriptEntry.id)
        return list(await session.scalars(query))


async def test_stop_in_a_group_by_the_asker_or_an_admin_hangs_up_on_the_provider(
    scene: Scene, db: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridges.handoff")
    fake, provider = scene.fake, scene.provider
    group = fake.group("Team")
    bob, carol, admin = fake.user("Bob"), fake.user("Carol"), fake.user("Ada")
    fake.join(group, admin, "administrator")
    provider.script(content("Long "), content("answer"), Hang())
    fake.say(group, bob, ASK + "question")
    reply = await streaming(fake, group, "Long answer")
    assert data_of(reply) == [stop_of(bob)]

    assert await answered(fake, fake.press(reply, stop_of(bob), carol)) == ControlNotices.stop_not_yours
    assert not provider.disconnected.is_set()
    assert await answered(fake, fake.press(reply, stop_of(bob), admin)) is None
    await scene.telegram.final(group, "Long answer (stopped)")
    audit = f"telegram user {admin.id} stopped a reply to telegram user {bob.id} in chat {group.id}"
    assert audit in caplog.text  # a moderator's action is audited (on every desk's log, where there is one)
    await asyncio.wait_for(provider.disconnected.wait(), 5)
    assert data_of(reply) == [regenerate_of(bob)]  # Stop gone with the final edit
    await eventually(lambda: holds(agent_texts(db), ["Long answer (stopped)"]), what="the transcript")

    provider.disconnected.clear()
    provider.script(content("Second "), content("try"), Hang())
    fake.say(group, bob, ASK + "again")
    again = await streaming(fake, group, "Second try")
    assert await answered(fake, fake.press(again, stop_of(bob), bob)) is None
    await scene.telegram.final(group, "Second try (stopped)")
    await asyncio.wait_for(provider.disconnected.wait(), 5)


async def test_a_private_chat_streams_a_draft_without_a_stop_button_and_stop_is_a_command(
    scene: Scene,
) -> None:
    fake, provider = scene.fake, scene.provider
    alice = fake.user("Alice")
    chat = fake.private_chat(alice)
    fake.say(chat, alice, "/stop")
    await scene.telegram.final(chat, ControlNotices.nothing_to_stop)

    provider.script(content("Drafting "), content("away"), Hang())
    fake.say(chat, alice, "write something")
    await fake.wait_for(
        lambda: any(
            d.history and d.history[-1] == f"Drafting away {IN_PROGRESS}" for d in fake.drafts_in(chat)
        ),
        what="the draft",
    )
    fake.say(chat, alice, "/stop")
    stopped = await scene.telegram.final(chat, "Drafting away (stopped)")
    await asyncio.wait_for(provider.disconnected.wait(), 5)
    assert data_of(stopped) == [regenerate_of(alice)]
    assert [m.text for m in fake.bot_messages(chat)] == [
        ControlNotices.nothing_to_stop,
        "Drafting away (stopped)",
    ]


async def test_regenerate_replaces_the_reply_in_place_only_for_its_user_and_only_the_latest(
    scene: Scene, db: async_sessionmaker[AsyncSession]
) -> None:
    fake, provider = scene.fake, scene.provider
    group = fake.group("Team")
    bob, carol = fake.user("Bob"), fake.user("Carol")
    fake.say(group, bob, ASK + "hello")
    reply = await scene.telegram.final(group, "echo #1: hello")
    await fake.wait_for(lambda: data_of(reply) == [regenerate_of(bob)], what="Regenerate")

    press = fake.press(reply, regenerate_of(bob), carol)
    assert await answered(fake, press) == ControlNotices.regenerate_not_yours
    provider.script(content("Hello, "), content("again."))
    assert await answered(fake, fake.press(reply, regenerate_of(bob), bob)) is None
    await scene.telegram.final(group, "Hello, again.")
    assert [m.message_id for m in fake.bot_messages(group)] == [reply.message_id]  # edited in place
    assert provider.requests[1]["messages"] == provider.requests[0]["messages"]
    await eventually(lambda: holds(agent_texts(db), ["Hello, again."]), what="the replacement recorded")
    assert await agent_texts(db, Role.SYSTEM) == [ControlNotices.regenerated.format(text="echo #1: hello")]

    fake.say(group, bob, ASK + "next")
    await scene.telegram.final(group, "echo #2: next")
    late = fake.press(reply, regenerate_of(bob), bob)
    assert await answered(fake, late) == ControlNotices.too_late
    assert len(provider.requests) == 3


async def test_regenerate_works_on_a_reply_streamed_as_a_draft(
    scene: Scene, db: async_sessionmaker[AsyncSession]
) -> None:
    """A private chat streams a draft (its key is not a message id); the transcript keeps the id of the
    message the draft became, so the Regenerate press on that message finds its reply."""
    fake, provider = scene.fake, scene.provider
    alice = fake.user("Alice")
    chat = fake.private_chat(alice)
    fake.say(chat, alice, "hello")
    reply = await scene.telegram.final(chat, "echo #1: hello")
    assert fake.drafts_in(chat), "the reply streamed as a draft"
    await fake.wait_for(lambda: data_of(reply) == [regenerate_of(alice)], what="Regenerate")
    provider.script(content("Hello, "), content("again."))
    assert await answered(fake, fake.press(reply, regenerate_of(alice), alice)) is None
    await scene.telegram.final(chat, "Hello, again.")
    assert [m.message_id for m in fake.bot_messages(chat)] == [reply.message_id]
    await eventually(lambda: holds(agent_texts(db), ["Hello, again."]), what="the replacement recorded")


async def test_a_stop_button_left_by_a_restart_says_the_reply_is_over(scene: Scene) -> None:
    fake, provider = scene.fake, scene.provider
    group = fake.group("Team")
    bob = fake.user("Bob")
    provider.script(content("Cut "), content("off"), Hang())
    fake.say(group, bob, ASK + "question")
    reply = await streaming(fake, group, "Cut off")
    await scene.telegram.restart()
    assert data_of(reply) == [stop_of(bob)]
    assert await answered(fake, fake.press(reply, stop_of(bob), bob)) == ControlNotices.already_finished


async def test_an_agent_that_cannot_be_asked_again_gets_no_regenerate_button(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with running(db) as telegram:  # the harness's scripted agent keeps a state of its own
        fake = telegram.fake
        group, bob = fake.group("Team"), fake.user("Bob")
        fake.say(group, bob, ASK + "hello")
        reply = await telegram.final(group, "scripted: hello (#1)")
        assert reply.buttons == []
