"""What the Relay is told by the configuration: routing, limits, and the features it wires in.

A reload (ops/reload.py) builds a new one and hands it to `Relay.reconfigure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from bridges.render import MAX_REPLY_CHARS
from bridges.triggers import TriggerPolicy
from settings import IntakeSettings, QuotaSettings, Settings


@dataclass(frozen=True)
class RelayPolicy:
    default_agent: str
    idle_timeout: timedelta
    handoff_expiry: timedelta
    bindings: Mapping[tuple[str, str], str]
    """Bindings from configuration; bindings stored in the database take precedence."""
    user_messages_per_minute: float = 12.0
    user_burst: int = 5
    """A user may send this many messages at once, then `user_messages_per_minute`."""
    max_input_chars: int = 4000
    """Longer messages are kept whole in the transcript but shortened for the agent."""
    handoffs_per_hour: int = 3
    """Requests for a human one user may open in an hour, so /reset and /human in a loop cannot flood
    the moderators with topics and pings."""
    max_reply_chars: int = MAX_REPLY_CHARS
    """An agent's reply is cut before this many characters and its stream closed."""
    instance: str = "main"
    """This process's name: after a crash it finishes only the replies it had started itself."""
    db_outage_grace: float = 30.0
    """Seconds to keep retrying while the database is unreachable or locked, before telling the user."""
    moderators: bool = True
    """Whether any moderator desk is set up. Without one a request for a human is declined, honestly,
    and the conversation stays with the agent."""
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    """The reasons a user picks from before a request for a human opens; none opens it at once."""
    triggers: TriggerPolicy = field(default_factory=TriggerPolicy)
    """When bridges answer messages not addressed to the bot (`[[triggers]]`)."""
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    burst_window: float = 0.0
    """Seconds within which one user's messages in one place join one turn (bridges/bursts.py); 0: off."""
    stop_button: bool = True
    regenerate_button: bool = True
    """Reply controls (bridges/replies.py `WriterPolicy`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RelayPolicy:
        limits = settings.limits
        return cls(
            default_agent=settings.routing.default_agent,
            idle_timeout=timedelta(minutes=settings.routing.idle_timeout_minutes),
            handoff_expiry=timedelta(minutes=settings.handoff.expire_after_minutes),
            bindings={(b.scope, b.id): b.agent for b in settings.routing.bindings},
            user_messages_per_minute=limits.user_messages_per_minute,
            user_burst=limits.user_burst,
            max_input_chars=limits.max_input_chars,
            handoffs_per_hour=limits.handoffs_per_hour,
            max_reply_chars=limits.max_reply_chars,
            instance=settings.ops.instance,
            moderators=any(config.has_desk for config in settings.platforms().values()),
            intake=settings.handoff.intake,
            triggers=TriggerPolicy(settings.triggers),
            quotas=settings.quotas,
            burst_window=limits.burst_window_seconds,
            stop_button=settings.controls.stop_button,
            regenerate_button=settings.controls.regenerate_button,
        )
