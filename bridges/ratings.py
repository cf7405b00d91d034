"""Satisfaction ratings, platform-neutral: ask once when a moderator resolves a case, keep the first
press, take an optional comment, write both to the desks' log, count them, and report a desk's average.

Which closes ask: a case RESOLVED by a moderator (the Resolve button, /close, or a close they scheduled)
in which a moderator answered the user. Not a return to the bot, an expiry, an auto-close after silence,
a user who left, nor a case closed without a word to the user: there was no person's help to rate.

The buttons are stored buttons (bridges/buttons.py) whose payload names the case and the score, so each
platform shows them its usual way and a press still resolves after a restart. The press itself is taken
by the platform (bridges/discord/ratings.py, bridges/telegram/ratings.py): only it can answer the presser
alone and ask for the comment its own way (a Discord modal, a Telegram reply).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agents.base import Button
from bridges.budget import acquire_all
from bridges.catalogue import Strings
from bridges.surface import Surface, SurfaceError
from models import MAX_SCORE, Conversation, Handoff, HandoffStatus, Rating, User
from ops import metrics
from settings import RatingSettings

if TYPE_CHECKING:
    from bridges.handoff import HandoffService

log = logging.getLogger(__name__)

RATING_KEY = "switchboard_rating"
"""The key of a rating button's payload; nothing an agent sends is looked at as a rating without it."""
COMMENT_LIMIT = 1000
"""Characters of a comment kept (a Discord text input's limit, set to match)."""
STAR = "⭐"
REPORT_DAYS = 30
"""The period `/ratings` reports without a number of days given; at most `MAX_REPORT_DAYS`."""
MAX_REPORT_DAYS = 3660


class RatingNotices(Strings, key="ratings.user"):
    """What ratings tell the user (the question and the thanks are configured in `[handoff.ratings]`)."""

    question = "How did we do? Please rate the help you got."
    """Unless `[handoff.ratings] question` says otherwise (then in that one language)."""
    thanks = "Thank you for your rating!"
    result = "{question}\n{stars} {score}/5. {thanks}"
    again = "You already rated this conversation {score}/5. Thank you!"
    not_yours = "Only the person who was helped can rate this conversation."
    gone = "This rating is no longer open."
    comment_prompt = "Anything to add? Reply to this message with a comment, or just carry on."
    comment_title = "Anything to add?"
    """A Discord modal's title: at most 45 characters."""
    comment_label = "Your comment"
    """A Discord text input's label, and Telegram's reply placeholder: at most 45 characters."""
    comment_thanks = "Thank you, your comment was passed on to the team."
    comment_again = "You already left a comment on this conversation. Thank you!"


class RatingWords(Strings, key="ratings.desk"):
    """What ratings write in the desks' log and answer moderators."""

    rated = "case #{id} rated {stars} ({score}/5) by {user}"
    commented = "case #{id}: comment from {user}: {comment}"
    report = (
        "Resolved here in the last {days} days: {average:.1f}/5, rated by {count} of {asked} users asked."
    )
    report_none = "Resolved here in the last {days} days: no ratings yet ({asked} users asked)."
    spread = "{stars} {count}"
    everywhere = "All desks: {average:.1f}/5 from {count} ratings."
    usage = "Usage: /ratings [DAYS]: this desk's ratings of the last DAYS days (1-{most}; {default} if none)."


class Verdict(enum.StrEnum):
    RATED = "rated"
    AGAIN = "again"
    """The case was rated already: the first press stands."""
    NOT_YOURS = "not_yours"
    GONE = "gone"
    """No question was asked for this case (a forged or stale button)."""


@dataclass(frozen=True)
class RatingPress:
    handoff_id: int
    score: int


@dataclass(frozen=True)
class Rated:
    verdict: Verdict
    answer: str
    """What the presser is shown: the result in place of the buttons, or why nothing changed."""


def rating_buttons(handoff_id: int) -> tuple[Button, ...]:
    return tuple(
        Button(STAR * score, {RATING_KEY: {"case": handoff_id, "score": score}})
        for score in range(1, MAX_SCORE + 1)
    )


def rating_press(button: Button) -> RatingPress | None:
    """The case and score of a rating button, or None for any other button."""
    found: Any = button.payload.get(RATING_KEY) if isinstance(button.payload, dict) else None
    if not isinstance(found, dict):
        return None
    case, score = found.get("case"), found.get("score")
    if type(case) is not int or type(score) is not int or not 1 <= score <= MAX_SCORE:
        return None
    return RatingPress(case, score)


class Ratings:
    """Over one `HandoffService`: its database, clock, policy, desks' log, and ways to reach users."""

    def __init__(self, handoffs: HandoffService) -> None:
        self.handoffs = handoffs

    @property
    def settings(self) -> RatingSettings:
        return self.handoffs.policy.ratings

    async def ask(self, handoff_id: int) -> bool:
        """Called once a case is closed: whether its user is to be asked (see the module's docstring);
        if so, the case's rating row is made, and the question is then shown by `post`."""
        if not self.settings.enabled:
            return False
        async with self.handoffs.db.begin() as session:
            handoff = await session.get_one(Handoff, handoff_id)
            desk, by_person, _ = (handoff.closed_by or "").partition(":")
            if handoff.status != HandoffStatus.RESOLVED or not by_person or handoff.first_response_at is None:
                return False
            session.add(Rating(handoff_id=handoff_id, desk=desk, asked_at=self.handoffs.now()))
        return True

    async def post(self, conversation_id: int, surface: Surface) -> SurfaceError | None:
        """Show the question of the conversation's oldest case not yet asked, with its buttons. A refusal
        for good (the user blocked the bot) drops it; a passing failure is returned, to be retried."""
        async with self.handoffs.db() as session:
            handoff_id = await session.scalar(
                select(Rating.handoff_id)
                .join(Handoff, Handoff.id == Rating.handoff_id)
                .where(Handoff.conversation_id == conversation_id, Rating.shown_at.is_(None))
                .order_by(Rating.handoff_id)
                .limit(1)
            )
        if handoff_id is None:
            return None
        say = (await self.handoffs.user_words(handoff_id))(RatingNotices)
        await acquire_all(surface.budgets)
        try:
            await surface.send(self.settings.question or say.question, rating_buttons(handoff_id))
        except SurfaceError as exc:
            if not exc.permanent:
                return exc
            log.warning("case #%s: the rating question was refused (%s); not asked", handoff_id, exc)
        async with self.handoffs.db.begin() as session:
            await session.execute(
                update(Rating)
                .where(Rating.handoff_id == handoff_id)
                .values(shown_at=self.handoffs.now())
                .execution_options(synchronize_session=False)
            )
        return None

    @property
    def words(self) -> RatingWords:
        """What the desks' log and `/ratings` say, in the desks' language."""
        return self.handoffs.catalogue.desk(RatingWords)

    async def rate(self, press: RatingPress, platform: str, user_id: str, say: RatingNotices) -> Rated:
        """A press: the case's own user's first one is kept; anyone else, or a second press, is told why
        nothing changed (in `say`, the presser's language)."""
        async with self.handoffs.db.begin() as session:
            found = await _case(session, press.handoff_id)
            if found is None:
                return Rated(Verdict.GONE, say.gone)
            rating, user = found
            if (user.platform, user.external_id) != (platform, user_id):
                return Rated(Verdict.NOT_YOURS, say.not_yours)
            result = await session.execute(
                update(Rating)
                .where(Rating.handoff_id == press.handoff_id, Rating.score.is_(None))
                .values(score=press.score, rated_at=self.handoffs.now())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                kept = select(Rating.score).where(Rating.handoff_id == press.handoff_id)
                score = await session.scalar(kept)
                return Rated(Verdict.AGAIN, say.again.format(score=score))
        metrics.RATINGS.labels(str(press.score), rating.desk, platform).inc()
        stars = STAR * press.score
        summary = self.words.rated.format(
            id=press.handoff_id, stars=stars, score=press.score, user=user.display_name
        )
        await self.handoffs.log_case(press.handoff_id, summary)
        answer = say.result.format(
            question=self.settings.question or say.question,
            stars=stars,
            score=press.score,
            thanks=self.settings.thanks or say.thanks,
        )
        return Rated(Verdict.RATED, answer)

    async def comment(
        self, handoff_id: int, platform: str, user_id: str, text: str, say: RatingNotices
    ) -> str:
        """The user's comment on a case they rated: the first is kept and logged. Returns their answer,
        in `say`, their language."""
        text = " ".join(text.split())[:COMMENT_LIMIT]
        async with self.handoffs.db.begin() as session:
            found = await _case(session, handoff_id)
            if found is None:
                return say.gone
            _rating, user = found
            if (user.platform, user.external_id) != (platform, user_id):
                return say.not_yours
            result = await session.execute(
                update(Rating)
                .where(Rating.handoff_id == handoff_id, Rating.score.is_not(None), Rating.comment.is_(None))
                .values(comment=text, comment_prompt=None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return say.comment_again
        summary = self.words.commented.format(id=handoff_id, user=user.display_name, comment=text)
        await self.handoffs.log_case(handoff_id, summary)
        return say.comment_thanks

    async def comment_asked(self, handoff_id: int, prompt: str) -> None:
        """Remember the message (`chat:message`) whose reply is the case's comment (Telegram)."""
        async with self.handoffs.db.begin() as session:
            await session.execute(
                update(Rating)
                .where(Rating.handoff_id == handoff_id, Rating.comment.is_(None))
                .values(comment_prompt=prompt)
                .execution_options(synchronize_session=False)
            )

    async def prompted(self, prompt: str) -> int | None:
        """The case whose comment a reply to `prompt` (`chat:message`) is, while none was taken."""
        async with self.handoffs.db() as session:
            return await session.scalar(select(Rating.handoff_id).where(Rating.comment_prompt == prompt))

    async def report(self, desk: str, days: int) -> str:
        """`/ratings [days]`: of the desk's cases resolved in the last `days` (and every desk's), the
        average, how many of the users asked rated, and the spread."""
        since = self.handoffs.now() - timedelta(days=days)
        async with self.handoffs.db() as session:
            rows = await session.execute(
                select(Rating.score, func.count())
                .where(Rating.desk == desk, Rating.asked_at >= since)
                .group_by(Rating.score)
            )
            spread = {score: count for score, count in rows if score is not None}
            asked = await session.scalar(
                select(func.count()).where(Rating.desk == desk, Rating.asked_at >= since)
            )
            total, average = (
                await session.execute(
                    select(func.count(Rating.score), func.avg(Rating.score)).where(Rating.asked_at >= since)
                )
            ).one()
        count = sum(spread.values())
        if not count:
            return self.words.report_none.format(days=days, asked=asked or 0)
        mean = sum(score * n for score, n in spread.items()) / count
        lines = [
            self.words.report.format(days=days, average=mean, count=count, asked=asked or 0),
            " · ".join(
                self.words.spread.format(stars=STAR * score, count=spread.get(score, 0))
                for score in range(MAX_SCORE, 0, -1)
            ),
        ]
        if total != count:
            lines.append(self.words.everywhere.format(average=float(average), count=total))
        return "\n".join(lines)


async def _case(session: AsyncSession, handoff_id: int) -> tuple[Rating, User] | None:
    """The case's rating row and its user, if its user was asked."""
    found = await session.execute(
        select(Rating, User)
        .join(Handoff, Handoff.id == Rating.handoff_id)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .join(User, User.id == Conversation.user_id)
        .where(Rating.handoff_id == handoff_id)
    )
    row = found.first()
    return None if row is None else (row[0], row[1])
