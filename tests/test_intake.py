"""The intake menu and first-response targets on the services, on SQLite and PostgreSQL with the clock
injected; and their configuration, each mistake one line naming the key. (Both platforms end to end:
tests/test_intake_e2e.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Button, HandoffRequested, Message, TurnEnd
from bridges.handoff import HandoffService
from bridges.handoff_policy import HandoffPolicy
from bridges.intake import IntakeNotices
from bridges.relay import Notices, Relay
from fakes.telegram.harness import ScriptedAgent
from models import Handoff, HandoffStatus, InboundMessage
from settings import HandoffSettings, IntakeReason, IntakeSettings, SlaSettings
from tests.surfaces import RecordingSurface
from tests.test_handoff_service import RecordingDesk
from tests.test_relay import POLICY, Clock, inbound
from tests.test_settings import error, load

INTAKE = IntakeSettings(
    reasons=(
        IntakeReason(label="Billing", priority="high", ping={"desk": ("@billing",)}),
        IntakeReason(label="Other", priority="low"),
    )
)
HANDOFF = HandoffPolicy.from_settings(
    HandoffSettings(
        expire_after_minutes=120,
        escalate_after_minutes=None,
        intake=INTAKE,
        sla=SlaSettings(first_response_minutes={"high": 30, "normal": 60}),
    )
)


class World:
    """A relay with a scripted agent and one desk, on one database; `restart` builds them anew."""

    def __init__(self, db: async_sessionmaker[AsyncSession], intake: IntakeSettings = INTAKE) -> None:
        self.db, self.clock, self.intake = db, Clock(), intake
        self.desk, self.surface = RecordingDesk(), RecordingSurface()
        self.agent = ScriptedAgent()
        self.agent.script["help"] = [Message("A person then."), HandoffRequested("refund"), TurnEnd({})]
        self.restart()

    def restart(self) -> None:
        self.handoffs = HandoffService(
            self.db, HANDOFF, desks=[self.desk], surfaces=lambda *_: self.surface, now=self.clock
        )
        policy = replace(POLICY, intake=self.intake)
        self.relay = Relay(self.db, {"scripted": self.agent}, policy, handoffs=self.handoffs, now=self.clock)

    def shown(self) -> list[str]:
        return [posted.text for posted in self.surface.posted.values()]

    def buttons(self) -> dict[str, Button]:
        """The newest message's buttons, by label."""
        return {button.label: button for button in list(self.surface.posted.values())[-1].buttons}

    async def press(self, button: Button, user: str = "u1") -> None:
        await self.relay.handle(inbound(button.label, user=user, button=button), self.surface)

    async def handoffs_opened(self) -> list[Handoff]:
        async with self.db() as session:
            return list(await session.scalars(select(Handoff).order_by(Handoff.id)))


async def test_human_shows_the_reasons_and_a_press_opens_one_request_with_its_priority(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db)
    await world.relay.request_human(inbound("/human"), world.surface)
    assert world.shown() == [IntakeNotices.choose]
    billing = world.buttons()["Billing"]
    assert list(world.buttons()) == ["Billing", "Other"]
    assert await world.handoffs_opened() == []

    await world.press(billing, user="u2")  # someone else in the same chat
    assert world.shown()[-1] == IntakeNotices.not_yours
    assert await world.handoffs_opened() == []

    await world.press(billing)
    await world.press(billing)
    assert world.shown()[-2:] == [Notices.handoff_requested, Notices.handoff_already_open]
    (opened,) = await world.handoffs_opened()
    assert (opened.intake_label, opened.priority, opened.requested_by) == ("Billing", "high", "user")
    assert opened.first_response_due_at == opened.requested_at + timedelta(minutes=30)
    (view,) = world.desk.opened
    assert (view.intake_label, view.priority, view.pings) == ("Billing", "high", {"desk": ("@billing",)})

    await world.handoffs.close(opened.id, HandoffStatus.RESOLVED, "m1", "Maya")
    await world.press(billing)  # the menu was used up by the request it opened
    assert world.shown()[-1] == IntakeNotices.stale
    assert len(await world.handoffs_opened()) == 1


async def test_a_press_is_answered_once_even_across_a_restart(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db)
    await world.relay.request_human(inbound("/human"), world.surface)
    await world.press(world.buttons()["Other"])
    async with db() as session:  # nothing is left for a restart's recovery to answer again
        waiting = await session.scalars(select(InboundMessage).where(InboundMessage.handled_at.is_(None)))
        assert list(waiting) == []


async def test_without_reasons_human_and_the_agent_open_at_once(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db, IntakeSettings())
    await world.relay.handle(inbound("help"), world.surface)
    assert world.shown() == ["A person then.", Notices.handoff_requested]
    (opened,) = await world.handoffs_opened()
    assert (opened.reason, opened.intake_label, opened.priority) == ("refund", None, None)
    assert opened.first_response_due_at == opened.requested_at + timedelta(minutes=60)  # as "normal"


async def test_a_request_already_open_is_said_before_any_menu(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db)
    await world.relay.request_human(inbound("/human"), world.surface)
    await world.press(world.buttons()["Other"])
    await world.relay.handle(inbound("help"), world.surface)  # held for the moderator: no agent turn
    await world.relay.request_human(inbound("/human"), world.surface)
    assert world.shown()[-1] == Notices.handoff_already_open
    assert all(not posted.buttons for posted in list(world.surface.posted.values())[1:])


async def test_a_case_past_its_target_is_escalated_once_across_a_restart(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db)
    await world.relay.handle(inbound("help"), world.surface)  # the agent's handoff asks why first
    assert world.shown()[-1] == IntakeNotices.choose
    await world.press(world.buttons()["Billing"])
    world.clock.now += timedelta(minutes=29)
    await world.handoffs.tick()
    assert world.desk.overdues == []

    world.clock.now += timedelta(minutes=2)
    await world.handoffs.tick()
    await world.handoffs.tick()
    (overdue,) = world.desk.overdues
    assert (overdue.overdue, overdue.priority, overdue.status) == (True, "high", HandoffStatus.REQUESTED)
    world.restart()
    await world.handoffs.tick()
    assert len(world.desk.overdues) == 1
    assert (await world.handoffs.view(overdue.handoff_id)).overdue  # the mark stays on the notification


async def test_a_first_reply_in_time_stops_the_clock(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db)
    await world.relay.request_human(inbound("/human"), world.surface)
    await world.press(world.buttons()["Billing"])
    (opened,) = await world.handoffs_opened()
    await world.handoffs.claim(opened.id, "m1", "Maya")
    world.clock.now += timedelta(minutes=20)
    await world.handoffs.tick()
    assert world.desk.overdues == []  # a claim alone does not stop it...
    assert await world.handoffs.moderator_says(opened.id, "m1", "Maya", "Hello!")
    world.clock.now += timedelta(minutes=20)
    await world.handoffs.tick()
    assert world.desk.overdues == []  # ...the first reply does


async def test_a_reason_with_no_target_is_never_overdue(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db)
    await world.relay.request_human(inbound("/human"), world.surface)
    await world.press(world.buttons()["Other"])  # "low": no target configured
    (opened,) = await world.handoffs_opened()
    assert opened.first_response_due_at is None
    world.clock.now += timedelta(minutes=100)
    await world.handoffs.tick()
    assert world.desk.overdues == []


DESKS = """
[discord]
message_content_intent = true
[discord.handoff]
channel = 1
[telegram]
[telegram.handoff]
chat_id = -100
"""
ENV = {"SWITCHBOARD_DISCORD__TOKEN": "x", "SWITCHBOARD_TELEGRAM__TOKEN": "1:x"}


def reasons(*labels: str, extra: str = "") -> str:
    return "".join(f'[[handoff.intake.reasons]]\nlabel = "{label}"\n{extra}' for label in labels)


def test_a_readme_example_loads(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        DESKS
        + """
[handoff.intake]
confirm = true

[[handoff.intake.reasons]]
label = "Billing"
desks = ["discord"]
priority = "high"
ping = { discord = ["role:112233445566778899"] }

[[handoff.intake.reasons]]
label = "Report a user"
priority = "urgent"
ping = { discord = ["role:112233445566778899", "user:998877665544332211"], telegram = ["@lead_mod", 123456] }

[[handoff.intake.reasons]]
label = "Something else"
priority = "low"

[handoff.sla]
first_response_minutes = { urgent = 10, high = 30, normal = 120 }
""",
        ENV,
    )
    intake = settings.handoff.intake
    assert [reason.label for reason in intake.reasons] == ["Billing", "Report a user", "Something else"]
    assert intake.reasons[1].ping["telegram"] == ("@lead_mod", 123456)
    assert settings.handoff.sla.first_response_minutes == {"urgent": 10, "high": 30, "normal": 120}


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            reasons("Billing", extra='priority = "asap"\n'),
            "handoff.intake.reasons.0.priority: Input should be 'low', 'normal', 'high' or 'urgent'",
        ),
        (reasons("  "), "handoff.intake.reasons.0.label: a reason needs a label the user can read"),
        (
            reasons("Billing", "Other", "billing"),
            "handoff.intake.reasons: each label may appear once; repeated: Billing, billing",
        ),
        (
            reasons(*(f"Reason {n}" for n in range(26))),
            "handoff.intake.reasons: 26 reasons, but discord shows at most 25 buttons",
        ),
        (
            reasons("Billing", extra='desks = ["slack"]\n'),
            "handoff.intake.reasons.0: no desk named 'slack' is set up (have ['discord', 'telegram'])",
        ),
        (
            reasons("Billing", extra='ping = { discord = ["@mods"] }\n'),
            "handoff.intake.reasons.0.ping.discord: '@mods' is not a Discord ping: write \"role:ID\" or "
            '"user:ID"',
        ),
        (
            reasons("Billing", extra='ping = { telegram = ["mods"] }\n'),
            "handoff.intake.reasons.0.ping.telegram: 'mods' is not a Telegram mention: write \"@username\" "
            "or a user id",
        ),
        (
            "[handoff.sla]\nfirst_response_minutes = { high = 0 }\n",
            "handoff.sla.first_response_minutes.high: Input should be greater than 0",
        ),
    ],
)
def test_intake_mistakes_name_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    assert error(tmp_path, DESKS + toml, ENV).startswith(expected)


def test_a_reason_needs_a_desk_somewhere(tmp_path: Path) -> None:
    message = error(tmp_path, reasons("Billing", extra='desks = ["console"]\n'))
    assert message.startswith("handoff.intake.reasons.0: no desk named 'console' is set up (have [])")
