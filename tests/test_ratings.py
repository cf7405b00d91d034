"""Satisfaction ratings end to end on both platforms: a moderator resolves a case they answered, the user
is asked once, presses a star (after a restart, even), adds a comment, and the desk sees it in its log,
in /metrics and in /ratings. The real discord.py and python-telegram-bot against the fakes, with the
handoff service on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from discord.utils import escape_markdown
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Button
from bridges.cases import DeskWords
from bridges.handoff import HandoffService
from bridges.handoff_notices import UserNotices
from bridges.handoff_policy import HandoffPolicy
from bridges.notices import Notices
from bridges.ratings import (
    MAX_REPORT_DAYS,
    RATING_KEY,
    REPORT_DAYS,
    RatingNotices,
    RatingPress,
    RatingWords,
    Verdict,
    rating_buttons,
    rating_press,
)
from bridges.surface import SurfaceError
from fakes.discord import FakeInteraction, FakeMessage
from fakes.telegram import FakeChat, FakeUser
from fakes.telegram import FakeMessage as TelegramMessage
from fakes.telegram.harness import HANDOFF_POLICY
from models import HandoffStatus, Rating
from settings import ConfigError, RatingSettings, load_settings
from tests.surfaces import RecordingSurface
from tests.test_discord_desk import EPHEMERAL, App, World
from tests.test_discord_desk import world as world  # the fixture
from tests.test_discord_desk_tools import placed, private
from tests.test_handoff_service import World as HandoffWorld
from tests.test_relay import Clock, inbound
from tests.test_telegram_desk import Desk, ask_for_human, desk_running, topic_of

pytestmark = pytest.mark.e2e

ASKING = RatingSettings(enabled=True, question="How did we do?", thanks="Thanks!")
QUESTION_STARS = ["⭐", "⭐⭐", "⭐⭐⭐", "⭐⭐⭐⭐", "⭐⭐⭐⭐⭐"]


def counted(score: int, desk: str, platform: str) -> float:
    labels = {"score": str(score), "desk": desk, "platform": platform}
    return REGISTRY.get_sample_value("switchboard_ratings_total", labels) or 0.0


async def rating_of(db: async_sessionmaker[AsyncSession], handoff_id: int) -> Rating | None:
    async with db() as session:
        return await session.scalar(select(Rating).where(Rating.handoff_id == handoff_id))


def test_only_a_well_formed_rating_payload_is_a_rating() -> None:
    assert [rating_press(button) for button in rating_buttons(7)] == [RatingPress(7, n) for n in range(1, 6)]
    for payload in (
        {},
        {RATING_KEY: {"case": 7, "score": 6}},
        {RATING_KEY: {"case": "7", "score": 5}},
        {RATING_KEY: {"case": 7, "score": True}},
        {RATING_KEY: [7, 5]},
    ):
        assert rating_press(Button("⭐", payload)) is None


def test_the_ratings_section_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text('[handoff.ratings]\nenabled = true\nquestion = "Rate us?"\ncomments = false\n')
    policy = HandoffPolicy.from_settings(load_settings(path, {}).handoff)
    assert policy.ratings == RatingSettings(enabled=True, question="Rate us?", comments=False)
    assert HandoffPolicy.from_settings(load_settings(None, {}).handoff).ratings.enabled is False
    for body, problem in (
        ('question = ""', "handoff.ratings.question: String should have at least 1 character"),
        ("stars = 10", "handoff.ratings.stars: unknown key"),
    ):
        path.write_text(f"[handoff.ratings]\n{body}\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, {})
        assert str(caught.value) == f"{problem} (in {path})"


# -- Telegram ---------------------------------------------------------------------------------------


@pytest.fixture
async def desk(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Desk]:
    async with desk_running(db, policy=replace(HANDOFF_POLICY, ratings=ASKING)) as running_desk:
        yield running_desk


async def answered_and_resolved(desk: Desk, name: str = "Uma") -> tuple[FakeUser, FakeChat, int]:
    """A user's case, claimed and answered by Maya, then resolved with the button."""
    fake, maya = desk.fake, desk.maya
    user, chat, case = await ask_for_human(desk, name)
    note = await desk.notification(case)
    await desk.answer(fake.press(note, f"hd:claim:{case}", maya))
    fake.say(desk.mods, maya, "Your refund is on its way.", thread_id=topic_of(desk, note))
    await desk.in_chat(chat, "Maya (moderator): Your refund is on its way.")
    await desk.answer(fake.press(note, f"hd:resolve:{case}", maya))
    return user, chat, case


async def question(desk: Desk, chat: FakeChat) -> TelegramMessage:
    message = await desk.in_chat(chat, ASKING.question)
    assert [b["text"] for b in message.buttons] == QUESTION_STARS
    return message


async def test_telegram_rating_after_a_restart_then_a_comment_logged_counted_and_reported(desk: Desk) -> None:
    fake = desk.fake
    uma, chat, case = await answered_and_resolved(desk)
    asked = await question(desk, chat)
    texts = [m.text for m in fake.bot_messages(chat)]
    assert texts.index(UserNotices.resolved) < texts.index(ASKING.question)  # after the closing words
    before = {score: counted(score, "telegram", "telegram") for score in (4, 5)}

    await desk.telegram.restart()  # the buttons are stored: a new process still knows them
    mallory = fake.user("Mallory")
    refused = await desk.answer(fake.press(asked, asked.buttons[0]["callback_data"], mallory))
    assert (refused["text"], refused["show_alert"]) == (RatingNotices.not_yours, "true")
    four, five = asked.buttons[3]["callback_data"], asked.buttons[4]["callback_data"]
    answers = [await desk.answer(fake.press(asked, data, uma)) for data in (four, five)]  # a double tap
    (won,) = [n for n, answer in zip((4, 5), answers, strict=True) if "text" not in answer]  # either may
    (lost,) = [answer for answer in answers if "text" in answer]
    assert (lost["text"], lost["show_alert"]) == (RatingNotices.again.format(score=won), "true")

    result = f"{ASKING.question}\n{'⭐' * won} {won}/5. {ASKING.thanks}"
    await fake.wait_for(lambda: asked.text == result and not asked.buttons, what="the result shown")
    prompt = await desk.in_chat(chat, RatingNotices.comment_prompt)
    assert prompt.reply_markup == {
        "force_reply": True,
        "input_field_placeholder": RatingNotices.comment_label,
    }
    rating = await rating_of(desk.telegram.db, case)
    assert rating is not None and (rating.score, rating.desk) == (won, "telegram")
    assert counted(won, "telegram", "telegram") == before[won] + 1

    turns = len(desk.telegram.agent.turns)
    fake.say(chat, uma, "Quick and kind, thank you", reply_to=prompt)
    await desk.in_chat(chat, RatingNotices.comment_thanks)
    assert len(desk.telegram.agent.turns) == turns  # the comment never reached the agent
    rating = await rating_of(desk.telegram.db, case)
    assert rating is not None and rating.comment == "Quick and kind, thank you"
    fake.say(chat, uma, "and one more thing", reply_to=prompt)  # the comment is taken: back to the agent
    await desk.in_chat(chat, "scripted: and one more thing (#1)")

    user = f"telegram user Uma ({uma.id})"
    await desk.in_chat(desk.log, f"📋 case #{case} rated {'⭐' * won} ({won}/5) by Uma\n{user}")
    await desk.in_chat(desk.log, f"📋 case #{case}: comment from Uma: Quick and kind, thank you\n{user}")

    fake.say(desk.mods, desk.maya, "/ratings 7")
    spread = " · ".join(f"{'⭐' * n} {int(n == won)}" for n in range(5, 0, -1))
    await desk.in_chat(
        desk.mods,
        f"Resolved here in the last 7 days: {won}.0/5, rated by 1 of 1 users asked.\n{spread}",
    )
    fake.say(desk.mods, desk.maya, "/ratings soon")
    await desk.in_chat(desk.mods, RatingWords.usage.format(most=MAX_REPORT_DAYS, default=REPORT_DAYS))


async def test_without_a_configured_question_the_user_is_asked_in_their_language(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with desk_running(db, policy=replace(HANDOFF_POLICY, ratings=RatingSettings(enabled=True))) as desk:
        fake, maya = desk.fake, desk.maya
        jonas = fake.user("Jonas", language_code="de")
        chat = fake.private_chat(jonas)
        fake.say(chat, jonas, "/human")
        german = desk.telegram.relay.catalogue.words("de")
        await desk.in_chat(chat, german(Notices).handoff_requested)
        note = await desk.notification(1)
        await desk.answer(fake.press(note, "hd:claim:1", maya))
        fake.say(desk.mods, maya, "Erledigt.", thread_id=topic_of(desk, note))
        await desk.in_chat(chat, german(UserNotices).from_moderator.format(name="Maya", text="Erledigt."))
        await desk.answer(fake.press(note, "hd:resolve:1", maya))
        asked = await desk.in_chat(chat, german(RatingNotices).question)
        assert german(RatingNotices).question != RatingNotices.question
        answer = await desk.answer(fake.press(asked, asked.buttons[4]["callback_data"], jonas))
        assert "text" not in answer
        thanks = german(RatingNotices).thanks
        await fake.wait_for(lambda: asked.text.endswith(f"5/5. {thanks}"), what="the German thanks")

        fake.say(desk.mods, maya, "/ratings ²")  # a digit to str.isdigit, not a number of days
        await desk.in_chat(desk.mods, RatingWords.usage.format(most=MAX_REPORT_DAYS, default=REPORT_DAYS))


async def test_telegram_asks_only_after_a_moderator_answered_and_resolved(desk: Desk) -> None:
    fake, maya = desk.fake, desk.maya
    _, chat, case = await ask_for_human(desk, "Quinn")  # resolved without a word to the user
    note = await desk.notification(case)
    await desk.answer(fake.press(note, f"hd:resolve:{case}", maya))
    await desk.in_chat(chat, UserNotices.resolved)

    _, other, returned = await ask_for_human(desk, "Rae")  # answered, then handed back to the bot
    note = await desk.notification(returned)
    await desk.answer(fake.press(note, f"hd:claim:{returned}", maya))
    fake.say(desk.mods, maya, "Let me hand you back.", thread_id=topic_of(desk, note))
    await desk.in_chat(other, "Maya (moderator): Let me hand you back.")
    await desk.answer(fake.press(note, f"hd:return:{returned}", maya))
    await desk.in_chat(other, UserNotices.returned)

    _, third, resolved = await answered_and_resolved(desk, "Sol")  # the one that asks, after the others
    await question(desk, third)
    for place in (chat, other):
        assert ASKING.question not in [m.text for m in fake.bot_messages(place)]
    assert await rating_of(desk.telegram.db, case) is None
    assert await rating_of(desk.telegram.db, returned) is None
    assert await rating_of(desk.telegram.db, resolved) is not None


# -- Discord ----------------------------------------------------------------------------------------


@pytest.fixture
async def app(world: World, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[App]:
    app = App(world, db)
    app.policy = replace(app.policy, ratings=ASKING)
    await app.start()
    yield app
    await app.bridge.close(grace=1.0)


async def discord_question(app: App) -> tuple[FakeMessage, int]:
    """Alice asks in #general, Maya claims, answers and resolves; the question there, and the case."""
    fake, world = app.world.fake, app.world
    await fake.user_says(world.general, world.alice, f"<@{fake.bot.id}> help")
    notification = await app.notification()
    thread = await app.thread(notification)
    await placed(app.handoffs, "discord", "thread", str(thread.id))
    await app.press(notification, "claim", world.maya)
    await fake.user_says(thread, world.maya, "Your refund is on its way.")
    await fake.wait_until(
        lambda: (
            "maya (moderator): Your refund is on its way."
            in [m.content for m in fake.bot_messages(world.general)]
        )
    )
    await app.press(notification, "resolve", world.maya)
    asked = await fake.wait_until(
        lambda: next((m for m in fake.bot_messages(world.general) if m.content == ASKING.question), None),
        what="the rating question",
    )
    assert [b["label"] for b in asked.buttons()] == QUESTION_STARS
    return asked, (await app.handoff()).id


async def test_discord_rating_after_a_restart_with_a_modal_comment_logged_counted_and_reported(
    world: World, app: App
) -> None:
    fake = world.fake
    asked, case = await discord_question(app)
    before = {score: counted(score, "discord", "discord") for score in (3, 5)}
    await app.restart()

    ids = [b["custom_id"] for b in asked.buttons()]
    refused = await fake.answer(await fake.press(asked, ids[0], world.mallory))
    assert refused.flags & EPHEMERAL and refused.content == RatingNotices.not_yours
    presses = await asyncio.gather(
        fake.press(asked, ids[4], world.alice), fake.press(asked, ids[2], world.alice)
    )
    callbacks = [await fake.wait_for_callback(press) for press in presses]
    (won,) = [p for p, c in zip(presses, callbacks, strict=True) if c["type"] == 9]
    (lost,) = [p for p in presses if p is not won]
    score = 5 if won is presses[0] else 3
    assert (await fake.answer(lost)).content == RatingNotices.again.format(score=score)
    modal = won.modal
    assert modal is not None and modal["title"] == RatingNotices.comment_title
    result = f"{ASKING.question}\n{'⭐' * score} {score}/5. {ASKING.thanks}"
    await fake.wait_until(lambda: asked.content == result and not asked.buttons(), what="the result shown")
    assert counted(score, "discord", "discord") == before[score] + 1

    submitted: FakeInteraction = await fake.submit(won, comment="Quick and kind, thank you")
    thanked = await fake.answer(submitted)
    assert thanked.flags & EPHEMERAL and thanked.content == RatingNotices.comment_thanks
    rating = await rating_of(app.db, case)
    assert rating is not None and (rating.score, rating.comment) == (score, "Quick and kind, thank you")

    user = f"discord user alice ({world.alice.id})"
    commented = escape_markdown(f"case #{case}: comment from alice: Quick and kind, thank you") + f"\n{user}"
    await fake.wait_until(
        lambda: commented in [m.content for m in fake.bot_messages(world.log)], what="the comment logged"
    )
    rated = escape_markdown(f"case #{case} rated {'⭐' * score} ({score}/5) by alice") + f"\n{user}"
    assert rated in [m.content for m in fake.bot_messages(world.log)]

    report = await private(fake, world.mods, world.maya, "ratings", days=7)
    assert (
        report.splitlines()[0]
        == f"Resolved here in the last 7 days: {score:.1f}/5, rated by 1 of 1 users asked."
    )
    assert await private(fake, world.mods, world.mallory, "ratings") == DeskWords.not_moderator


# -- across processes -------------------------------------------------------------------------------


class FailsOnceWithButtons(RecordingSurface):
    """The network drops the first message with buttons (the question); everything else goes through."""

    dropped = False

    async def send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        if buttons and not self.dropped:
            self.dropped = True
            raise SurfaceError("discord unreachable: ClientConnectionError")
        return await super().send(text, buttons)


async def test_a_process_that_cannot_reach_the_user_queues_the_question_after_the_closing_words(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """A moderator resolves in a process without the user's platform: the question waits in the database
    behind the closing words, survives a passing failure, and reaches the user once, with its buttons."""
    world = HandoffWorld(db, Clock())  # serves the user (console chat c1)
    world.user = FailsOnceWithButtons()
    policy = replace(world.handoffs.policy, ratings=ASKING)
    world.handoffs.policy = policy
    await world.relay.handle(inbound("help"), RecordingSurface())
    case = await world.handoff_id()
    elsewhere = HandoffService(db, policy, now=world.clock)  # cannot reach the user
    assert (await elsewhere.claim(case, "discord:7", "Maya")).won
    assert await elsewhere.moderator_says(case, "discord:7", "Maya", "Done!")
    assert await elsewhere.close(case, HandoffStatus.RESOLVED, "discord:7", "Maya")
    assert world.user.visible_texts() == []

    # the question's first try fails: it stays queued
    assert await world.handoffs.deliveries.deliver_pending() == 3
    assert world.user.visible_texts()[-1] == UserNotices.resolved
    assert await world.handoffs.deliveries.deliver_pending() == 2  # the question, then the agent's return
    assert await world.handoffs.deliveries.deliver_pending() == 0
    assert world.user.visible_texts() == [
        UserNotices.claimed.format(name="Maya"),
        "Maya (moderator): Done!",
        UserNotices.resolved,
        ASKING.question,
    ]
    assert world.user.visible_buttons()[-1] == rating_buttons(case)
    rating = await rating_of(db, case)
    assert rating is not None and rating.desk == "discord" and rating.shown_at is not None


async def test_a_desk_report_counts_its_own_cases_and_names_every_desks_average(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = HandoffWorld(db, Clock())
    world.handoffs.policy = replace(world.handoffs.policy, ratings=ASKING)
    ratings = world.handoffs.ratings
    for closer, score in (("discord:7", 5), ("telegram:8", 2), ("discord:7", None)):
        await world.relay.handle(inbound("help"), RecordingSurface())
        case = await world.handoff_id()
        assert (await world.handoffs.claim(case, closer, "Maya")).won
        assert await world.handoffs.moderator_says(case, closer, "Maya", "Done!")
        assert await world.handoffs.close(case, HandoffStatus.RESOLVED, closer, "Maya")
        if score is not None:
            assert (
                await ratings.rate(RatingPress(case, score), "console", "u1", RatingNotices())
            ).verdict == Verdict.RATED
    assert (await ratings.report("discord", 7)).splitlines() == [
        "Resolved here in the last 7 days: 5.0/5, rated by 1 of 2 users asked.",
        "⭐⭐⭐⭐⭐ 1 · ⭐⭐⭐⭐ 0 · ⭐⭐⭐ 0 · ⭐⭐ 0 · ⭐ 0",
        "All desks: 3.5/5 from 2 ratings.",
    ]
    world.clock.now += timedelta(days=8)
    assert await ratings.report("discord", 7) == RatingWords.report_none.format(days=7, asked=0)
