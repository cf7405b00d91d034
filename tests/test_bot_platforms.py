"""`python bot.py` with Discord and Telegram configured: the real process against both loopback fakes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import bot
from fakes.discord import FakeDiscord
from fakes.telegram import FakeTelegram

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
GREETING = "I'm the Switchboard demo agent"


def config(discord: FakeDiscord, telegram_url: str) -> str:
    return (
        f'[discord]\napi_base = "{discord.api_base}"\ngateway_url = "{discord.gateway_url}"\n'
        f'command_guilds = []\n\n[telegram]\nbase_url = "{telegram_url}"\npoll_timeout = 1\n'
    )


def telegram_only(telegram_url: str) -> str:
    return f'[telegram]\nbase_url = "{telegram_url}"\npoll_timeout = 1\n'


async def start_bot(cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        "run",
        "--config",
        str(cwd / "switchboard.toml"),
        cwd=cwd,
        env={
            **clean,
            "SWITCHBOARD_AGENTS__DEMO__FIRST_CHUNK_DELAY": "0",
            "SWITCHBOARD_LOGGING__LEVEL": "DEBUG",  # the most talkative logs, for the secret scan
            **env,
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def drain_stderr(process: asyncio.subprocess.Process) -> asyncio.Task[bytes]:
    """Read the process's stderr as it comes: a DEBUG log fills the pipe's buffer in seconds, and a
    process blocked writing its log stops serving."""
    assert process.stderr is not None
    return asyncio.create_task(process.stderr.read())


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakeTelegram, str]]:
    telegram = FakeTelegram()
    async with FakeDiscord() as discord, telegram.running() as telegram_url:
        yield discord, telegram, telegram_url


@pytest.mark.slow
async def test_bot_serves_discord_and_telegram_and_stops_cleanly_on_sigterm(
    tmp_path: Path, fakes: tuple[FakeDiscord, FakeTelegram, str]
) -> None:
    discord, telegram, telegram_url = fakes
    alice = discord.add_user("alice")
    dm = discord.dm_channel(alice)
    bob = telegram.user("Bob")
    bob_chat = telegram.private_chat(bob)
    (tmp_path / "switchboard.toml").write_text(config(discord, telegram_url))
    process = await start_bot(
        tmp_path,
        {"SWITCHBOARD_DISCORD__TOKEN": discord.token, "SWITCHBOARD_TELEGRAM__TOKEN": telegram.token},
    )
    stderr = drain_stderr(process)
    try:
        await discord.connected(within=30)
        await telegram.wait_for(lambda: telegram.count("setMyCommands") > 0, within=30, what="start")
        await discord.user_says(dm, alice, "hello")
        telegram.say(bob_chat, bob, "hello")
        await discord.wait_until(
            lambda: any(GREETING in m.content for m in discord.bot_messages(dm)), within=20, what="reply"
        )
        await telegram.wait_for(
            lambda: any(GREETING in m.text for m in telegram.bot_messages(bob_chat)), within=20, what="reply"
        )
        assert discord.rate_limited == 0 and not telegram.refusals(429)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    logs = (await stderr).decode()
    assert process.returncode == 0, logs
    assert logs.count("\n") > 50 and "[redacted]" in logs  # the scan read real, token-bearing lines
    assert discord.token not in logs and telegram.token not in logs


@pytest.mark.slow
async def test_rejected_token_stops_start_up_with_one_line(
    tmp_path: Path, fakes: tuple[FakeDiscord, FakeTelegram, str]
) -> None:
    discord, _, telegram_url = fakes
    (tmp_path / "switchboard.toml").write_text(config(discord, telegram_url))
    process = await start_bot(
        tmp_path,
        {"SWITCHBOARD_DISCORD__TOKEN": discord.token, "SWITCHBOARD_TELEGRAM__TOKEN": "999:wrong-token"},
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert stderr.decode().strip().splitlines()[-1] == (
        "switchboard: could not start: telegram: the bot token was rejected; check [telegram] token"
    )
    assert "wrong-token" not in stderr.decode()


@pytest.mark.slow
async def test_platform_mode_logs_info_without_verbose(
    tmp_path: Path, fakes: tuple[FakeDiscord, FakeTelegram, str]
) -> None:
    """`-v` is for the console chat only: a deployed bot (the Docker image runs no `-v`) logs INFO."""
    _, telegram, telegram_url = fakes
    (tmp_path / "switchboard.toml").write_text(telegram_only(telegram_url))
    process = await start_bot(
        tmp_path, {"SWITCHBOARD_TELEGRAM__TOKEN": telegram.token, "SWITCHBOARD_LOGGING__LEVEL": "INFO"}
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while "telegram: polling as @" not in (line := (await process.stderr.readline()).decode()):
                assert line, "the process ended without logging that it started polling"
        assert " INFO " in line
    finally:
        process.kill()
        await process.wait()


@pytest.fixture
def root_logger_restored() -> Iterator[None]:
    """For tests that call `bot.main` in process: it configures the root logger for a whole process."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logger_restored")
async def test_the_final_error_stays_the_last_line_when_threads_log_after_it(
    tmp_path: Path,
    fakes: tuple[FakeDiscord, FakeTelegram, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """aiosqlite's worker threads log "operation ... completed" after the awaiting code has moved on,
    so they may still write while bot.py prints why it stops: that line must stay last and whole."""
    _, _, telegram_url = fakes
    (tmp_path / "switchboard.toml").write_text(telegram_only(telegram_url))
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SWITCHBOARD_TELEGRAM__TOKEN", "999:wrong-token")
    monkeypatch.setenv("SWITCHBOARD_LOGGING__LEVEL", "DEBUG")

    status = await asyncio.to_thread(bot.main, ["run", "--config", str(tmp_path / "switchboard.toml")])
    late = threading.Thread(target=logging.getLogger("aiosqlite").debug, args=("operation completed",))
    late.start()
    late.join()

    stderr = capsys.readouterr().err
    assert status == 1
    assert " DEBUG aiosqlite: " in stderr  # worker threads did log before the error
    assert stderr.endswith(
        "\nswitchboard: could not start: telegram: the bot token was rejected; check [telegram] token\n"
    )
