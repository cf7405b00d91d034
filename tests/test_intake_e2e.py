"""The intake menu and first-response targets end to end: both bridges (the real discord.py and
python-telegram-bot clients against their loopback fakes), both desks and one HandoffService, as bot.py
runs them (tests/test_handoff_e2e.py), on SQLite and PostgreSQL. A reason routes to its own desk only,
pings whom it names there, and shows its priority; a case past its target is escalated once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.discord.desk import DeskReplies as DiscordDeskReplies
from bridges.handoff_policy import HandoffPolicy
from bridges.intake import IntakeNotices
from bridges.relay import Notices
from bridges.sla import SlaNotices
from bridges.telegram.desk import DeskReplies as TelegramDeskReplies
from fakes.convocore_ws import Chunk, Close, handoff
from fakes.discord import FakeChannel, FakeMessage, FakeUser
from fakes.telegram import FakeChat
from fakes.telegram import FakeMessage as TelegramMessage
from models import Handoff, utcnow
from settings import HandoffSettings, IntakeReason, IntakeSettings, SlaSettings
from tests.test_discord_desk import fields
from tests.test_handoff_e2e import App, Platforms, discord_texts, telegram_shows, telegram_texts
from tests.test_handoff_e2e import platforms as platforms  # the fixture

pytestmark = pytest.mark.e2e

REPORT_PING = "@lead_mod"


def intake(platforms: Platforms, *, confirm: bool = False) -> IntakeSettings:
    """Billing goes to the Discord desk (pinging its moderator role), a report to the Telegram desk
    (pinging `REPORT_PING`), anything else to both."""
    return IntakeSettings(
        reasons=(
            IntakeReason(
                label="Billing",
                desks=("discord",),
                ping={"discord": (f"role:{platforms.moderators}",)},
                priority="high",
            ),
            IntakeReason(
                label="Report a user",
                desks=("telegram",),
                ping={"telegram": (REPORT_PING,)},
                priority="urgent",
            ),
            IntakeReason(label="Something else"),
        ),
        confirm=confirm,
    )


async def started(platforms: Platforms, db: async_sessionmaker[AsyncSession], *, confirm: bool) -> App:
    app = App(platforms, db, default_agent="convocore")
    app.relay_policy = replace(app.relay_policy, intake=intake(platforms, confirm=confirm))
    app.handoff_policy = HandoffPolicy.from_settings(
        HandoffSettings(
            expire_after_minutes=60,
            escalate_after_minutes=None,
            intake=intake(platforms, confirm=confirm),
            sla=SlaSettings(first_response_minutes={"high": 30, "urgent": 5}),
        )
    )
    await app.start()
    return app


@pytest.fixture
async def app(platforms: Platforms, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    app = await started(platforms, db, confirm=False)
    yield app
    await app.close()


@pytest.fixture
async def confirming_app(platforms: Platforms, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    app = await started(platforms, db, confirm=True)
    yield app
    await app.close()


async def handoffs(app: App) -> int:
    async with app.db() as session:
        return int(await session.scalar(select(func.count()).select_from(Handoff)) or 0)


def choice_id(menu: FakeMessage, label: str) -> str:
    return next(str(b["custom_id"]) for b in menu.buttons() if b.get("label") == label)


def callback(menu: TelegramMessage, label: str) -> str:
    return next(str(b["callback_data"]) for b in menu.buttons if b.get("text") == label)


async def discord_menu(app: App, channel: FakeChannel, text: str = IntakeNotices.choose) -> FakeMessage:
    fake = app.p.discord
    return await fake.wait_until(
        lambda: next((m for m in fake.bot_messages(channel) if m.content == text and m.components), None),
        what=f"a message with buttons reading {text!r}",
    )


async def discord_press(app: App, menu: FakeMessage, label: str, user: FakeUser) -> None:
    fake = app.p.discord
    pressed = await fake.press(menu, choice_id(menu, label), user)
    assert (await fake.wait_for_callback(pressed))["type"] == 6  # acknowledged; the answer is a message


async def telegram_menu(app: App, chat: FakeChat, text: str = IntakeNotices.choose) -> TelegramMessage:
    fake = app.p.telegram
    await fake.wait_for(lambda: any(m.text == text for m in fake.bot_messages(chat)), what=repr(text))
    return [m for m in fake.bot_messages(chat) if m.text == text][-1]


async def test_discord_human_shows_the_menu_and_the_press_goes_to_its_desk_with_its_ping(
    app: App,
) -> None:
    p, discord, telegram = app.p, app.p.discord, app.p.telegram
    guild = next(iter(discord.guilds.values()))
    general = discord.add_text_channel(guild, "general")
    mallory = discord.add_user("mallory")
    discord.add_member(guild, mallory)

    await discord.slash(general, p.alice, "human")
    menu = await discord_menu(app, general)
    assert [b["label"] for b in menu.buttons()] == ["Billing", "Report a user", "Something else"]

    await discord_press(app, menu, "Billing", mallory)  # not hers to press
    await discord.wait_until(
        lambda: discord_texts(discord, general)[-1:] == [IntakeNotices.not_yours], what="mallory told"
    )
    assert await handoffs(app) == 0

    await discord_press(app, menu, "Billing", p.alice)
    await discord.wait_until(
        lambda: discord_texts(discord, general)[-1:] == [Notices.handoff_requested], what="alice answered"
    )
    note, _ = await app.discord_notification()
    assert fields(note)["Priority"] == "high"
    assert fields(note)["Reason"] == "Billing: the user asked for a human"
    assert note.content.startswith(f"<@&{p.moderators}> Handoff #")
    assert note.pinged == {f"role:{p.moderators}"}
    assert telegram.bot_messages(p.tg_mods) == []  # a billing case is not the Telegram desk's

    await discord_press(app, menu, "Billing", p.alice)  # once more: nothing opens twice
    await discord.wait_until(
        lambda: discord_texts(discord, general)[-1:] == [Notices.handoff_already_open], what="told"
    )
    assert await handoffs(app) == 1
    assert telegram_texts(telegram, p.tg_mods) == []


async def test_telegram_confirmation_step_no_then_yes(confirming_app: App) -> None:
    app, p = confirming_app, confirming_app.p
    telegram, discord = p.telegram, p.discord
    uma = telegram.user("Uma")
    chat = telegram.private_chat(uma)

    telegram.say(chat, uma, "/human")
    menu = await telegram_menu(app, chat)
    telegram.press(menu, callback(menu, "Report a user"), uma)
    question = IntakeNotices.confirm.format(label="Report a user")
    asked = await telegram_menu(app, chat, question)
    assert [b["text"] for b in asked.buttons] == [IntakeNotices.yes, IntakeNotices.no]
    telegram.press(asked, callback(asked, IntakeNotices.no), uma)
    await telegram_shows(telegram, chat, [question, IntakeNotices.cancelled])
    assert await handoffs(app) == 0

    telegram.press(menu, callback(menu, "Report a user"), uma)  # changed their mind
    await telegram_shows(telegram, chat, [question, IntakeNotices.cancelled, question])
    asked = [m for m in telegram.bot_messages(chat) if m.text == question][-1]
    telegram.press(asked, callback(asked, IntakeNotices.yes), uma)
    await telegram_shows(telegram, chat, [question, Notices.handoff_requested])

    handoff_id = (await app.handoff()).id
    tg_note, _ = await app.telegram_notification(handoff_id)
    assert "Priority: urgent" in tg_note.text
    assert "Reason: Report a user: the user asked for a human" in tg_note.text
    assert tg_note.text.endswith(REPORT_PING)
    assert [m for m in discord.bot_messages(p.mods) if m.embeds] == []  # not the Discord desk's


async def test_an_agents_handoff_shows_the_menu_and_a_press_survives_a_restart(app: App) -> None:
    p, telegram = app.p, app.p.telegram
    uma = telegram.user("Uma")
    chat = telegram.private_chat(uma)
    p.convocore.script(Chunk("Let me find a person for you."), handoff("billing dispute"), Close())
    telegram.say(chat, uma, "I was charged twice")
    await telegram_shows(telegram, chat, ["Let me find a person for you.", IntakeNotices.choose])
    menu = await telegram_menu(app, chat)
    assert await handoffs(app) == 0  # nothing opens before the user says why

    await app.restart()
    telegram.press(menu, callback(menu, "Something else"), uma)
    await telegram_shows(telegram, chat, [IntakeNotices.choose, Notices.handoff_requested])
    opened = await app.handoff()
    assert (opened.reason, opened.requested_by, opened.intake_label, opened.priority) == (
        "billing dispute",
        "agent",
        "Something else",
        "normal",
    )
    await app.telegram_notification(opened.id)  # no desks named: every desk gets it
    note, _ = await app.discord_notification()
    assert fields(note)["Reason"] == "Something else: billing dispute"


async def test_a_press_of_a_menu_from_before_a_reset_is_stale(app: App) -> None:
    telegram = app.p.telegram
    uma = telegram.user("Uma")
    chat = telegram.private_chat(uma)
    telegram.say(chat, uma, "/human")
    menu = await telegram_menu(app, chat)
    telegram.say(chat, uma, "/reset")
    await telegram_shows(telegram, chat, [Notices.reset])
    telegram.press(menu, callback(menu, "Billing"), uma)
    await telegram_shows(telegram, chat, [Notices.reset, IntakeNotices.stale])
    assert await handoffs(app) == 0


async def test_a_case_past_its_first_response_target_is_escalated_once_on_its_desks(app: App) -> None:
    p, discord, telegram = app.p, app.p.discord, app.p.telegram
    dm = discord.dm_channel(p.alice)
    await discord.slash(dm, p.alice, "human")
    menu = await discord_menu(app, dm)
    await discord_press(app, menu, "Billing", p.alice)
    note, _ = await app.discord_notification()
    uma = telegram.user("Uma")
    chat = telegram.private_chat(uma)
    telegram.say(chat, uma, "/human")
    tg_menu = await telegram_menu(app, chat)
    telegram.press(tg_menu, callback(tg_menu, "Report a user"), uma)
    await telegram_shows(telegram, chat, [IntakeNotices.choose, Notices.handoff_requested])
    report = await app.handoff()
    tg_note, topic = await app.telegram_notification(report.id)
    billing_id = report.id - 1

    await app.handoffs.sla.tick(utcnow() + timedelta(minutes=6))  # the report's 5 minutes are up
    overdue = TelegramDeskReplies.overdue.format(id=report.id)
    await telegram.wait_for(lambda: SlaNotices.mark in tg_note.text, what="the Telegram mark")
    await telegram_shows(telegram, p.tg_mods, [f"{overdue} {REPORT_PING}"], topic)
    assert SlaNotices.mark not in fields(note)["Status"]  # billing has 30 minutes

    later = utcnow() + timedelta(minutes=31)
    await app.handoffs.sla.tick(later)
    await app.handoffs.sla.tick(later)  # once only
    await discord.wait_until(lambda: SlaNotices.mark in fields(note)["Status"], what="the Discord mark")
    pinged = [m for m in discord.bot_messages(p.mods) if m.content.startswith(f"<@&{p.moderators}>")]
    assert [m.content for m in pinged[1:]] == [
        DiscordDeskReplies.overdue.format(ping=f"<@&{p.moderators}> ", id=billing_id, user="alice")
    ]
    assert pinged[1].pinged == {f"role:{p.moderators}"}
    assert telegram_texts(telegram, p.tg_mods, topic).count(f"{overdue} {REPORT_PING}") == 1
