"""Live configuration: SIGHUP and `bot.py reload` re-read the file without dropping a reply; a bad file
is rejected with one line and the running config stays."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.demo import DemoAgent, DemoSettings
from bot import take_reloads
from bridges.budget import RateBudget
from bridges.notices import Notices
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy
from bridges.surface import Inbound
from fakes.telegram import FakeTelegram
from models import Conversation, User, create_engine, session_factory
from ops.reload import LiveConfig, restart_only_changes
from settings import load_settings
from tests.test_bot_platforms import ROOT, start_bot

pytestmark = pytest.mark.e2e

LAST_WORDS = "the message ends on exactly the text the agent produced."


def config_text(telegram_url: str, *, max_input_chars: int, bound_to: str | None, poll: float = 0.05) -> str:
    binding = f'\n[[routing.bindings]]\nscope = "global"\nagent = "{bound_to}"\n' if bound_to else ""
    return (
        f'[telegram]\nbase_url = "{telegram_url}"\npoll_timeout = 0\npoll_interval = {poll}\n'
        f"drafts = false\n\n"
        f'[agents.demo]\nkind = "demo"\nfirst_chunk_delay = 0\nchunk_delay = 0.015\n\n'
        f'[agents.other]\nkind = "demo"\nfirst_chunk_delay = 0\nchunk_delay = 0\n\n'
        f"[limits]\nmax_input_chars = {max_input_chars}\n{binding}"
    )


class LogLines:
    """The process's stderr, read line by line as it comes, so a test can wait for one."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        self._stream = process.stderr
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self._stream.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip())
                self._changed.notify_all()

    async def wait_for(self, text: str, *, after: int = 0, within: float = 20) -> str:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: any(text in line for line in self.lines[after:]))
        return next(line for line in self.lines[after:] if text in line)

    async def close(self) -> None:
        await self._task


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    async with fake.running() as url:
        yield fake, url


async def agents_of_conversations(database: Path) -> dict[str, str]:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(
                select(User.external_id, Conversation.agent_name).join(
                    Conversation, Conversation.user_id == User.id
                )
            )
            return {user: agent for user, agent in rows}
    finally:
        await engine.dispose()


async def reload_command(cwd: Path, *args: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        "reload",
        "--config",
        str(cwd / "switchboard.toml"),
        *args,
        cwd=cwd,
        env={**clean, "SWITCHBOARD_TELEGRAM__TOKEN": "123:reload"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


@pytest.mark.slow
async def test_a_reload_mid_reply_applies_limits_and_bindings_and_a_bad_file_changes_nothing(
    tmp_path: Path, telegram: tuple[FakeTelegram, str]
) -> None:
    fake, url = telegram
    path = tmp_path / "switchboard.toml"
    path.write_text(config_text(url, max_input_chars=4000, bound_to=None))
    bob, eve, zoe = fake.user("Bob"), fake.user("Eve"), fake.user("Zoe")
    bob_chat, eve_chat, zoe_chat = fake.private_chat(bob), fake.private_chat(eve), fake.private_chat(zoe)
    process = await start_bot(tmp_path, {"SWITCHBOARD_TELEGRAM__TOKEN": fake.token})
    log = LogLines(process)
    try:
        await fake.wait_for(lambda: fake.count("setMyCommands") > 0, within=30, what="start")
        fake.say(bob_chat, bob, "long")
        await fake.wait_for(lambda: bool(fake.bot_messages(bob_chat)), within=20, what="the reply to start")

        # A new file while Bob's reply streams, applied with the CLI: shorter input, a binding, and a
        # platform setting that only a restart can change.
        path.write_text(config_text(url, max_input_chars=100, bound_to="other", poll=0.06))
        status, out, err = await reload_command(tmp_path)
        assert status == 0, err
        assert out.startswith(f"asked process {process.pid} to reload its config")
        warning = await log.wait_for("config reloaded")
        assert "telegram changed and take effect only after a restart" in warning
        shown = "".join(m.text for m in fake.bot_messages(bob_chat))
        assert not (shown.count("Part ") == 8 and shown.endswith(LAST_WORDS)), "the reload came mid-reply"

        def bobs_reply() -> str:
            return "".join(m.text for m in fake.bot_messages(bob_chat))

        await fake.wait_for(
            lambda: bobs_reply().count("Part ") == 8 and bobs_reply().endswith(LAST_WORDS),
            within=60,
            what="Bob's whole reply",
        )

        fake.say(eve_chat, eve, "x" * 150)
        shortened = Notices.input_shortened.format(limit=100)
        await fake.wait_for(
            lambda: any(m.text == shortened for m in fake.bot_messages(eve_chat)),
            within=20,
            what="the notice",
        )

        # A file that does not load: one line, and the running config (100 characters) stays.
        path.write_text("[limits\nmax_input_chars = 5000\n")
        before = len(log.lines)
        process.send_signal(signal.SIGHUP)
        rejected = await log.wait_for("config reload rejected", after=before)
        assert "the running config stays" in rejected and "not valid TOML" in rejected
        fake.say(zoe_chat, zoe, "y" * 150)
        await fake.wait_for(
            lambda: any(m.text == shortened for m in fake.bot_messages(zoe_chat)),
            within=20,
            what="the notice",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
        await log.close()
    assert process.returncode == 0
    assert not any("interrupted" in m.text or "restarted" in m.text for m in fake.bot_messages(bob_chat))
    agents = await agents_of_conversations(tmp_path / "switchboard.db")
    assert agents == {str(bob.id): "demo", str(eve.id): "other", str(zoe.id): "other"}


async def test_reload_without_a_running_process_says_so(tmp_path: Path) -> None:
    (tmp_path / "switchboard.toml").write_text("")
    status, out, err = await reload_command(tmp_path)
    assert (status, out) == (1, "")
    assert err == "switchboard: could not reload: no Switchboard process is running on ./switchboard.db\n"
    status, _, err = await reload_command(tmp_path, "--pid", "999999999")
    assert status == 1 and err.startswith("switchboard: could not reload: process 999999999: ")


def settings_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switchboard.toml"
    path.write_text('[agents.demo]\nkind = "demo"\n\n[agents.other]\nkind = "demo"\n\n' + text)
    return path


async def test_a_reload_naming_an_agent_that_is_not_running_changes_nothing(
    tmp_path: Path, db: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    path = settings_with(tmp_path, "[limits]\nuser_burst = 2\n")
    settings = load_settings(path, environ={})
    agents = {name: DemoAgent(name, DemoSettings()) for name in ("demo", "other")}
    relay = Relay(db, agents, RelayPolicy.from_settings(settings))
    live = LiveConfig(settings, path, environ={})
    take_reloads(live, relay)

    settings_with(
        tmp_path,
        "[limits]\nuser_burst = 7\nuser_messages_per_minute = 30\nburst_window_seconds = 1.5\n\n"
        "[quotas.user]\nmessages = 3\n\n"
        '[[triggers]]\nscope = "global"\nkeywords = ["refund"]\n\n'
        '[[handoff.intake.reasons]]\nlabel = "Billing"\n\n'
        "[handoff.sla]\nfirst_response_minutes = { normal = 5 }\n\n"
        '[strings.overrides.en]\n"notices.reset" = "Fresh start!"\n',
    )
    assert live.reload()
    assert (relay.gate.burst, relay.gate.per_minute) == (7, 30)
    assert relay.bursts.window == timedelta(seconds=1.5)
    assert relay.quotas.enabled and relay.quotas.settings.user.messages == 3
    assert relay.policy.triggers.reads_unaddressed(["global"])
    assert [reason.label for reason in relay.intake.settings.reasons] == ["Billing"]
    assert relay.handoffs.sla.targets == {"normal": 5}
    assert relay.catalogue.words()(Notices).reset == "Fresh start!"

    path.write_text(
        '[agents.demo]\nkind = "demo"\n\n[agents.third]\nkind = "demo"\n\n'
        '[routing]\ndefault_agent = "third"\n\n[limits]\nuser_burst = 9\n'
    )
    assert not live.reload()
    assert "agent 'third' is not running (agents are added by a restart)" in caplog.text
    assert (relay.gate.burst, relay.policy.default_agent) == (7, "demo")


async def test_a_reloaded_rate_keeps_what_a_user_has_spent(db: async_sessionmaker[AsyncSession]) -> None:
    agents = {"demo": DemoAgent("demo", DemoSettings(first_chunk_delay=0, chunk_delay=0))}
    policy = RelayPolicy.from_settings(load_settings(environ={}))
    relay = Relay(db, agents, policy)
    spam = Inbound(platform="console", chat_id="c", user_id="u", display_name="U", text="hi")
    for _ in range(policy.user_burst):
        assert await relay.gate.check(spam) is None
    relay.reconfigure(
        RelayPolicy.from_settings(load_settings(environ={"SWITCHBOARD_LIMITS__USER_BURST": "50"}))
    )
    refusal = await relay.gate.check(spam)  # a bigger burst is no fresh allowance for someone who spent it
    assert refusal is not None


def test_a_retuned_budget_refills_at_the_new_rate() -> None:
    now = [0.0]
    budget = RateBudget(1, per=60, burst=1, clock=lambda: now[0])
    budget.take()
    budget.retune(60, per=60, burst=5)
    assert not budget.available()
    now[0] = 1.0
    assert budget.available()


def test_only_changed_restart_sections_are_named(tmp_path: Path) -> None:
    old = load_settings(settings_with(tmp_path, ""), environ={"SWITCHBOARD_TELEGRAM__TOKEN": "1:a"})
    same = load_settings(
        settings_with(tmp_path, "[limits]\nuser_burst = 9\n"), environ={"SWITCHBOARD_TELEGRAM__TOKEN": "1:a"}
    )
    token = load_settings(settings_with(tmp_path, ""), environ={"SWITCHBOARD_TELEGRAM__TOKEN": "1:b"})
    assert restart_only_changes(old, same) == []
    assert restart_only_changes(old, token) == ["telegram"]
