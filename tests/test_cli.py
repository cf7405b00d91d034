"""The README's promises, run as a newcomer would: `printf 'hello\\n' | python bot.py` and friends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

import migrations
from models import Conversation, Role, TranscriptEntry, create_engine, session_factory

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
FAST = {
    "SWITCHBOARD_AGENTS__DEMO__FIRST_CHUNK_DELAY": "0.01",
    "SWITCHBOARD_AGENTS__DEMO__CHUNK_DELAY": "0.001",
}


def bot(
    cwd: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **(env or {})},
        timeout=60,
    )


def test_hello_streams_a_demo_reply_and_persists_it(tmp_path: Path) -> None:
    first = bot(tmp_path, stdin="hello\n")
    assert first.returncode == 0, first.stderr
    assert "console bridge" in first.stderr and "'demo'" in first.stderr and "switchboard.db" in first.stderr
    assert "bot> Hi **" in first.stdout and "demo agent" in first.stdout
    assert "[1] Tell me a joke" in first.stdout
    assert (tmp_path / "switchboard.db").exists()

    second = bot(tmp_path, stdin="hello\n", env=FAST)
    assert second.returncode == 0, second.stderr
    assert "Welcome back" in second.stdout and "message #2 of our conversation" in second.stdout


async def test_conversation_is_in_the_database_and_continues(tmp_path: Path, database_url: str) -> None:
    env = {**FAST, "SWITCHBOARD_DATABASE__URL": database_url}
    assert bot(tmp_path, stdin="hello\ntell me a joke\n", env=env).returncode == 0
    result = bot(tmp_path, stdin="what is this?\n", env=env)
    assert result.returncode == 0, result.stderr
    assert "message #3 of our conversation" in result.stdout

    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(Conversation)) == 1
            entries = list(await session.scalars(select(TranscriptEntry).order_by(TranscriptEntry.id)))
    finally:
        await engine.dispose()
    assert [e.role for e in entries if e.role is Role.USER] == [Role.USER] * 3
    assert [e.text for e in entries if e.role is Role.USER] == ["hello", "tell me a joke", "what is this?"]
    assert any("You said: “what is this?”" in e.text for e in entries if e.role is Role.AGENT)


def test_button_number_presses_the_offered_button(tmp_path: Path) -> None:
    result = bot(tmp_path, stdin="hello\n1\n", env=FAST)
    assert result.returncode == 0, result.stderr
    assert "you> 1" in result.stdout
    reply = result.stdout.split("you> 1", 1)[1]
    assert "programmers" in reply or "binary" in reply or "UDP" in reply  # a joke, not an echo of "1"


def test_with_no_desk_a_request_for_a_human_is_declined_honestly(tmp_path: Path) -> None:
    """The console has no moderators: asking for one (the agent's handoff, or /human) says so, and the
    conversation stays with the agent instead of waiting for nobody."""
    result = bot(
        tmp_path, stdin="I want to talk to a human\n/human\nare you there?\n/reset\nhello\n", env=FAST
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("No human moderators are set up for this assistant") == 2
    assert "You said: “are you there?”" in result.stdout  # the agent answered it
    assert "Started a new conversation" in result.stdout
    assert result.stdout.rstrip().endswith("[1] Tell me a joke  [2] Show a long answer  [3] Talk to a human")


def test_info_logs_stay_out_of_the_console_chat_unless_asked_for(tmp_path: Path) -> None:
    (tmp_path / "quiet").mkdir()
    (tmp_path / "verbose").mkdir()
    quiet = bot(tmp_path / "quiet", stdin="hello\n", env=FAST)
    verbose = bot(tmp_path / "verbose", "-v", stdin="hello\n", env=FAST)
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert "bot> Hi **" in quiet.stdout and " INFO " not in quiet.stderr
    assert " INFO alembic.runtime.migration: " in verbose.stderr  # the first start migrates


def test_the_bot_runs_on_uvloop_unless_turned_off(tmp_path: Path) -> None:
    """The start line names the loop the bot is really running on."""
    (tmp_path / "fast").mkdir()
    (tmp_path / "plain").mkdir()
    fast = bot(tmp_path / "fast", "-v", stdin="hello\n", env=FAST)
    plain = bot(tmp_path / "plain", "-v", stdin="hello\n", env={**FAST, "SWITCHBOARD_OPS__UVLOOP": "false"})
    assert fast.returncode == 0 and plain.returncode == 0, fast.stderr + plain.stderr
    assert "serving console on uvloop's event loop" in fast.stderr and "bot> Hi **" in fast.stdout
    assert "serving console on asyncio's event loop" in plain.stderr and "bot> Hi **" in plain.stdout


def test_migrate_and_check_config(tmp_path: Path) -> None:
    migrated = bot(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"is at revision {migrations.head_revision()} (head)" in migrated.stdout
    checked = bot(tmp_path, "check-config")
    assert checked.returncode == 0
    assert checked.stdout.startswith("config OK:") and "demo (demo)" in checked.stdout


@pytest.mark.parametrize(
    ("toml", "env", "line"),
    [
        ("[routing]\nidel_timeout_minutes = 3\n", {}, "routing.idel_timeout_minutes: unknown key"),
        ("[discord]\napi_base = 'http://127.0.0.1:9/api'\n", {}, "discord.token: missing secret"),
        ("", {"SWITCHBOARD_STREAMING__CONSOLE_EDIT_INTERVAL": "fast"}, "console.edit_interval:"),
    ],
)
def test_bad_config_stops_start_up_with_one_line(
    tmp_path: Path, toml: str, env: dict[str, str], line: str
) -> None:
    (tmp_path / "switchboard.toml").write_text(toml)
    for command in ("run", "check-config", "migrate"):
        result = bot(tmp_path, command, stdin="hello\n", env=env)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and line in result.stderr
    assert not (tmp_path / "switchboard.db").exists()


def test_secret_never_printed(tmp_path: Path) -> None:
    secret = "tok-very-secret-123"
    (tmp_path / "switchboard.toml").write_text(f"[discord]\ntoken = '{secret}'\n")
    result = bot(tmp_path, "check-config")
    assert result.returncode == 2 and secret not in result.stderr + result.stdout


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_database_password_in_the_query_string_is_never_shown(tmp_path: Path, database_url: str) -> None:
    secret = "pw-in-the-query-0123"
    env = {
        **FAST,
        "SWITCHBOARD_DATABASE__URL": f"{database_url}?password={secret}",  # trust auth: accepted, unused
        "SWITCHBOARD_LOGGING__LEVEL": "DEBUG",
        "SWITCHBOARD_OPS__UVLOOP": "false",  # asyncio's own loop logs at DEBUG, so there is DEBUG output
    }
    checked = bot(tmp_path, "check-config", env=env)
    assert checked.returncode == 0 and "?password=***" in checked.stdout, checked.stderr
    migrated = bot(tmp_path, "migrate", env=env)
    served = bot(tmp_path, "-v", stdin="hello\n", env=env)
    assert migrated.returncode == 0 and served.returncode == 0, migrated.stderr + served.stderr
    assert "bot> Hi **" in served.stdout and " DEBUG " in served.stderr
    for result in (checked, migrated, served):
        assert secret not in result.stdout + result.stderr


async def start_slow_bot(cwd: Path, **extra: str) -> asyncio.subprocess.Process:
    """bot.py answering "long" slowly, with its reply already streaming when this returns."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env = {
        **clean,
        "SWITCHBOARD_AGENTS__DEMO__FIRST_CHUNK_DELAY": "0",
        "SWITCHBOARD_AGENTS__DEMO__CHUNK_DELAY": "0.02",
        **extra,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"long\n")
    await process.stdin.drain()
    seen = b""
    async with asyncio.timeout(30):
        while b"bot> " not in seen:
            seen += await process.stdout.read(64)
    return process


async def stored_conversation(cwd: Path) -> tuple[list[tuple[Role, str]], dict[str, object] | None]:
    """The transcript and the reply still in progress of the one conversation in cwd's SQLite file."""
    engine = create_engine(f"sqlite+aiosqlite:///{cwd / 'switchboard.db'}")
    try:
        async with session_factory(engine)() as session:
            entries = [(e.role, e.text) for e in await session.scalars(select(TranscriptEntry))]
            pending = await session.scalar(select(Conversation.pending_reply))
    finally:
        await engine.dispose()
    return entries, pending


async def test_killed_mid_reply_is_reported_on_the_next_start(tmp_path: Path) -> None:
    process = await start_slow_bot(tmp_path)
    process.kill()  # SIGKILL: no chance to clean up
    await process.wait()

    after = bot(tmp_path, stdin="", env=FAST)
    assert after.returncode == 0, after.stderr
    assert "I was restarted while answering “long”" in after.stdout
    entries, pending = await stored_conversation(tmp_path)
    assert entries[0] == (Role.USER, "long")  # the user's message was kept
    assert (Role.SYSTEM, "reply interrupted by a restart") in entries
    assert pending is None


async def test_sigterm_lets_the_reply_in_progress_finish(tmp_path: Path) -> None:
    # The long reply streams for about 14 s; a grace as long as allowed lets it finish however slow
    # the machine is, so the test depends on no clock.
    process = await start_slow_bot(tmp_path, SWITCHBOARD_OPS__SHUTDOWN_GRACE_SECONDS="600")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 100)
    assert process.returncode == 0, stderr
    assert b"the message ends on exactly the text the agent produced." in stdout
    assert b"shutting down: finishing replies in progress" in stderr
    after = bot(tmp_path, stdin="", env=FAST)
    assert "I was restarted" not in after.stdout  # nothing was left half-written


async def test_sigterm_past_the_grace_period_cuts_the_reply_off_and_reports_it_later(tmp_path: Path) -> None:
    process = await start_slow_bot(tmp_path, SWITCHBOARD_OPS__SHUTDOWN_GRACE_SECONDS="0.1")
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr
    assert b"were cut off" in stderr
    after = bot(tmp_path, stdin="", env=FAST)
    assert "I was restarted while answering “long”" in after.stdout


async def test_a_second_process_on_the_same_sqlite_file_is_refused_and_the_first_left_alone(
    tmp_path: Path,
) -> None:
    first = await start_slow_bot(tmp_path)  # answering "long" on ./switchboard.db
    try:
        for command in ("run", "migrate"):
            second = await asyncio.to_thread(bot, tmp_path, command, env=FAST)
            assert (second.returncode, second.stdout, second.stderr) == (
                1,
                "",
                "switchboard: could not start: another Switchboard process is using ./switchboard.db "
                "(SQLite serves one process; use PostgreSQL to run several)\n",
            )
        entries, pending = await stored_conversation(tmp_path)
        assert pending is not None  # the first is still writing its reply, and nobody called it cut off
        assert [role for role, _ in entries] == [Role.USER]
    finally:
        first.kill()  # SIGKILL: the operating system releases the lock all the same
        stdout, _ = await first.communicate()
    assert b"I was restarted" not in stdout

    third = await asyncio.to_thread(bot, tmp_path, env=FAST)
    assert third.returncode == 0, third.stderr
    assert "I was restarted while answering “long”" in third.stdout  # now it was cut off
