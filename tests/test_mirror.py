"""Edits and deletions during a handoff, mirrored to the other side (bridges/mirror.py), across
platforms: both bridges, both desks and one HandoffService as bot.py runs them, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.edits import EDITED as NOTE
from bridges.mirror import MODERATOR_DELETED, USER_DELETED
from models import MessageCopy
from tests.polling import eventually, holds
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


async def copies_of(db: async_sessionmaker[AsyncSession], message_id: object) -> int:
    async with db() as session:
        count = await session.scalar(
            select(func.count()).where(MessageCopy.origin_message == str(message_id))
        )
    return count or 0


async def copied(app: App, message_id: object, count: int) -> None:
    """Until the copies of a message are remembered (just after they are posted)."""
    await eventually(lambda: holds(copies_of(app.db, message_id), count), what=f"{count} copies remembered")


async def test_a_telegram_users_edit_and_a_discord_moderators_edit_and_deletion_are_mirrored(
    convocore_app: App,
) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    uma, chat, seen = await convocore_user_asks_for_a_human(app)
    handoff_id, thread = await claimed_on_discord(app)
    _, topic = await app.telegram_notification(handoff_id)

    said = telegram.say(chat, uma, "you took 40 euros")
    await discord.wait_until(lambda: "**Uma:** you took 40 euros" in discord_texts(discord, thread))
    await copied(app, said.message_id, 2)  # in the Discord thread and the Telegram topic
    telegram.edit(said, "you took 45 euros")
    await discord.wait_until(
        lambda: "**Uma:** you took 45 euros (edited)" in discord_texts(discord, thread),
        what="the Discord copy edited",
    )
    await telegram_shows(telegram, p.tg_mods, ["💬 Uma: you took 45 euros (edited)"], topic)
    note = NOTE.format(text="you took 45 euros")
    assert not any(note in text for text in discord_texts(discord, thread))  # edited, not noted

    reply = await discord.user_says(thread, p.maya, "We refunded 40 euros.")
    seen += ["maya (moderator): We refunded 40 euros."]
    await telegram_shows(telegram, chat, seen[-1:])
    await copied(app, reply.id, 1)
    await discord.user_edits(reply, "We refunded 45 euros.")
    await telegram_shows(telegram, chat, ["maya (moderator): We refunded 45 euros. (edited)"])
    await discord.user_deletes(reply)
    await telegram_shows(telegram, chat, [MODERATOR_DELETED])


async def test_a_discord_users_deletion_and_a_telegram_moderators_edit_are_mirrored(
    convocore_app: App,
) -> None:
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    dm = await discord_user_asks_for_a_human(app)
    handoff_id = (await app.handoff()).id
    tg_note, topic = await app.telegram_notification(handoff_id)
    _, thread = await app.discord_notification()
    await app.telegram_press(tg_note, "claim", p.sam)

    oops = await discord.user_says(dm, p.alice, "my password is hunter2")
    await telegram_shows(telegram, p.tg_mods, ["💬 alice: my password is hunter2"], topic)
    await copied(app, oops.id, 2)
    await discord.user_deletes(oops)
    await telegram_shows(telegram, p.tg_mods, [f"💬 alice: {USER_DELETED}"], topic)
    await discord.wait_until(
        lambda: f"**alice:** {USER_DELETED}" in discord_texts(discord, thread), what="the Discord copy"
    )
    assert not any("hunter2" in text for text in telegram_texts(telegram, p.tg_mods, topic))

    reply = telegram.say(p.tg_mods, p.sam, "Please change it now.", thread_id=topic)
    await copied(app, reply.message_id, 1)
    telegram.edit(reply, "Please change it today.")
    await discord.wait_until(
        lambda: discord_texts(discord, dm)[-1:] == ["Sam (moderator): Please change it today. (edited)"],
        what="alice's copy edited",
    )
