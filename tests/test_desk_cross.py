"""The desk tools across platforms: a Telegram user served from the Discord desk and a Discord user
served from the Telegram desk, each through a note, an anonymous reply, a transfer and a scheduled close;
and a Telegram user who blocks the bot. Both bridges, both desks and one HandoffService, as bot.py runs
them (tests/test_handoff_e2e.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridges.cases import CaseNotices, DeskWords
from bridges.discord.desk_commands import CommandReplies
from bridges.handoff_notices import UserNotices
from bridges.telegram.desk import topic_key
from models import HandoffStatus, utcnow
from tests.test_discord_desk import fields
from tests.test_discord_desk_tools import placed, private, public
from tests.test_handoff_e2e import (
    App,
    claimed_on_discord,
    convocore_user_asks_for_a_human,
    discord_texts,
    discord_user_asks_for_a_human,
    telegram_shows,
    telegram_texts,
)
from tests.test_handoff_e2e import convocore_app as convocore_app  # the fixtures
from tests.test_handoff_e2e import platforms as platforms

pytestmark = pytest.mark.e2e


async def test_a_telegram_user_served_from_the_discord_desk(convocore_app: App) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    kai = discord.add_user("kai")
    discord.add_member(next(iter(discord.guilds.values())), kai, (p.moderators,))
    _, chat, seen = await convocore_user_asks_for_a_human(app)
    handoff_id, thread = await claimed_on_discord(app)
    _, topic = await app.telegram_notification(handoff_id)
    await placed(app.handoffs, "discord", "thread", str(thread.id))

    await public(discord, thread, p.maya, "note", text="charged twice, card ending 42")
    shown = DeskWords.note_shown.format(name="maya", text="charged twice, card ending 42")
    await telegram.wait_for(lambda: shown in telegram_texts(telegram, p.tg_mods, topic), what="the note")
    await public(discord, thread, p.maya, "areply", text="We are checking your payment.")
    seen += [UserNotices.claimed.format(name="maya"), "Staff: We are checking your payment."]
    await telegram_shows(telegram, chat, seen)

    moved = await private(discord, thread, p.maya, "transfer", member=kai)
    assert moved == DeskWords.transferred.format(id=handoff_id, name="kai")
    seen.append(CaseNotices.transferred_to.format(name="kai"))
    await telegram_shows(telegram, chat, seen)
    sent = await public(discord, thread, kai, "reply", text="Refund sent.")
    assert sent == CommandReplies.replied.format(name="kai", text="Refund sent.")
    seen.append("kai (moderator): Refund sent.")
    await telegram_shows(telegram, chat, seen)

    later = await private(discord, thread, kai, "close", **{"in": "30m"}, reason="waiting for the bank")
    assert later == DeskWords.close_scheduled.format(id=handoff_id, delay="30 minutes")
    await app.handoffs.cases.tick(utcnow() + timedelta(minutes=31))
    await telegram_shows(telegram, chat, [*seen, UserNotices.resolved])
    closed = await app.handoff()
    assert (closed.status, closed.closed_by_name, closed.close_reason) == (
        HandoffStatus.RESOLVED,
        "kai",
        "waiting for the bank",
    )


async def test_a_discord_user_served_from_the_telegram_desk(convocore_app: App) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    tia = telegram.user("Tia")
    telegram.join(p.tg_mods, tia)
    dm = await discord_user_asks_for_a_human(app)
    handoff_id = (await app.handoff()).id
    tg_note, topic = await app.telegram_notification(handoff_id)
    card, thread = await app.discord_notification()
    await placed(app.handoffs, "telegram", "topic", topic_key(p.tg_mods.id, topic))
    await app.telegram_press(tg_note, "claim", p.sam)

    telegram.say(p.tg_mods, p.sam, "/note asked twice before", thread_id=topic)
    await telegram.wait_for(
        lambda: DeskWords.noted in telegram_texts(telegram, p.tg_mods, topic), what="the note kept"
    )
    shown = DeskWords.note_shown.format(name="Sam", text="asked twice before")
    await discord.wait_until(lambda: shown in discord_texts(discord, thread), what="the note on Discord")
    telegram.say(p.tg_mods, p.sam, "/areply We are on it.", thread_id=topic)
    await discord.wait_until(
        lambda: discord_texts(discord, dm)[-1:] == ["Staff: We are on it."], what="the anonymous reply"
    )

    offer = telegram.say(p.tg_mods, tia, "I know this one", thread_id=topic)
    telegram.say(p.tg_mods, p.sam, "/transfer", thread_id=topic, reply_to=offer)
    told = CaseNotices.transferred_to.format(name="Tia")
    await discord.wait_until(lambda: discord_texts(discord, dm)[-1:] == [told], what="the transfer told")
    await discord.wait_until(lambda: fields(card)["Status"] == "Claimed by Tia", what="the card redrawn")

    telegram.say(p.tg_mods, tia, "/close in 30m refund on its way", thread_id=topic)
    scheduled = DeskWords.close_scheduled.format(id=handoff_id, delay="30 minutes")
    await telegram.wait_for(
        lambda: scheduled in telegram_texts(telegram, p.tg_mods, topic), what="the close scheduled"
    )
    await app.handoffs.cases.tick(utcnow() + timedelta(minutes=31))
    await discord.wait_until(
        lambda: discord_texts(discord, dm)[-1:] == [UserNotices.resolved], what="Alice told it closed"
    )
    closed = await app.handoff()
    assert (closed.closed_by_name, closed.close_reason) == ("Tia", "refund on its way")


async def test_a_telegram_user_who_blocks_the_bot_has_their_case_closed(convocore_app: App) -> None:
    app, p = convocore_app, convocore_app.p
    uma, chat, _ = await convocore_user_asks_for_a_human(app)
    handoff_id, _ = await claimed_on_discord(app)
    card, _ = await app.discord_notification()
    p.telegram.block_bot(uma)
    await p.discord.wait_until(lambda: fields(card)["Status"].startswith("Resolved"), what="the close")
    closed = await app.handoff()
    assert (closed.id, closed.status) == (handoff_id, HandoffStatus.RESOLVED)
    assert closed.close_reason == CaseNotices.left_reason.format(why="blocked the bot")
    assert UserNotices.resolved not in telegram_texts(p.telegram, chat)  # nobody to tell
