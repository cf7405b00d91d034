"""What the handoff is told by the configuration (`[handoff]`): timers, desk behaviour, hours, pings,
first-response targets and ratings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from bridges.desk_hours import DeskHours
from bridges.handoff_notices import UserNotices
from settings import HandoffSettings, RatingSettings


@dataclass(frozen=True)
class HandoffPolicy:
    expire_after: timedelta
    escalate_after: timedelta | None
    recent_entries: int = 10
    plain_messages: str = "reply"
    """What the holder's plain message in a case's thread or topic is: "reply" or "note"."""
    anonymous_replies: bool = False
    staff_name: str = "Staff"
    require_close_reason: bool = False
    auto_close: timedelta | None = None
    auto_close_warning: timedelta = timedelta(minutes=5)
    closing_message: str = UserNotices.resolved
    hours: DeskHours | None = None
    """The desks' business hours; None: always open, timers count wall-clock time."""
    pings: Mapping[str, Mapping[str, tuple[str | int, ...]]] = field(default_factory=dict)
    """By intake label, whom each desk pings for it ([handoff.intake] reasons' `ping`)."""
    first_response_minutes: Mapping[str, float] = field(default_factory=dict)
    """By priority, the first-response target ([handoff.sla])."""
    ratings: RatingSettings = field(default_factory=RatingSettings)

    @classmethod
    def from_settings(cls, settings: HandoffSettings) -> HandoffPolicy:
        escalate = settings.escalate_after_minutes
        auto_close = settings.auto_close_minutes
        return cls(
            expire_after=timedelta(minutes=settings.expire_after_minutes),
            escalate_after=timedelta(minutes=escalate) if escalate else None,
            recent_entries=settings.recent_entries,
            plain_messages=settings.plain_messages,
            anonymous_replies=settings.anonymous_replies,
            staff_name=settings.staff_name,
            require_close_reason=settings.require_close_reason,
            auto_close=timedelta(minutes=auto_close) if auto_close else None,
            auto_close_warning=timedelta(minutes=settings.auto_close_warning_minutes),
            closing_message=settings.closing_message,
            hours=DeskHours.from_settings(settings.hours) if settings.hours else None,
            pings={reason.label: reason.ping for reason in settings.intake.reasons},
            first_response_minutes={str(p): m for p, m in settings.sla.first_response_minutes.items()},
            ratings=settings.ratings,
        )
