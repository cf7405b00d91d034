"""The bot under test as a real process (`python bot.py run --config FILE`), read through /proc, and the
fresh database each run gets.

CPU time is user + system from /proc/PID/stat; memory is VmRSS and VmHWM (the peak) from
/proc/PID/status. Linux only, like the deployment it measures.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

import migrations
from models import Conversation, ConversationStatus, User, create_engine, safe_url, session_factory, utcnow

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class HarnessError(Exception):
    """The benchmark itself failed (the bot died, a fake misbehaved): no figures to report."""


class BotProcess:
    """One running bot. Its stderr goes to a file, so a chatty bot can never block on a full pipe."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self.pid = process.pid

    @classmethod
    async def start(cls, workdir: Path, config: str, env: Mapping[str, str]) -> BotProcess:
        config_path = workdir / "switchboard.toml"
        config_path.write_text(config)
        stderr = workdir / f"bot-{secrets.token_hex(3)}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        with stderr.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "bot.py"),
                "run",
                "--config",
                str(config_path),
                cwd=workdir,
                env={**clean, **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=sink,
            )
        return cls(process, stderr)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the bot has used so far."""
        fields = self._proc("stat").rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15

    def memory_bytes(self, key: str) -> int:
        """A /proc/PID/status size: "VmRSS" (now) or "VmHWM" (peak)."""
        for line in self._proc("status").splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
        raise HarnessError(f"/proc/{self.pid}/status has no {key}")

    def _proc(self, name: str) -> str:
        try:
            return Path(f"/proc/{self.pid}/{name}").read_text()
        except OSError:
            raise HarnessError(f"the bot exited early:\n{self.tail()}") from None

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr.read_text(errors="replace").splitlines()[-lines:])

    async def exited(self) -> None:
        """Return if the bot exits; a benchmark waits on this beside every condition."""
        await self.process.wait()

    async def settle(self, *, window: float = 0.5, busy: float = 0.02, within: float = 30.0) -> bool:
        """Wait until the bot is idle (under `busy` of one core over `window` seconds); False if it is
        still busy after `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        before = self.cpu_seconds()
        while loop.time() < deadline:
            await asyncio.sleep(window)
            now = self.cpu_seconds()
            if now - before < busy * window:
                return True
            before = now
        return False

    async def stop(self, within: float = 30.0) -> None:
        """SIGTERM, and a clean exit within `within` seconds, or the harness failed."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
                raise HarnessError(f"the bot did not stop within {within:g}s of SIGTERM") from None
        if self.process.returncode != 0:
            raise HarnessError(f"the bot exited with {self.process.returncode}:\n{self.tail()}")


@asynccontextmanager
async def fresh_database(server_url: str | None, workdir: Path, name: str) -> AsyncIterator[str]:
    """A new, migrated database: a SQLite file in `workdir`, or a throwaway database on the PostgreSQL
    server of `server_url` (created here, dropped afterwards). Yields its URL."""
    if server_url is None:
        path = workdir / f"{name}.db"
        path.unlink(missing_ok=True)  # left by an earlier run in a kept directory
        url = f"sqlite+aiosqlite:///{path}"
        await migrations.upgrade_url(url)
        yield url
        return
    database = f"switchboard_bench_{name}_{secrets.token_hex(4)}"
    admin = create_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{database}"'))
    except Exception as exc:
        await admin.dispose()
        raise HarnessError(f"could not create a database on {safe_url(server_url)}: {exc}") from None
    url = make_url(server_url).set(database=database).render_as_string(hide_password=False)
    try:
        await migrations.upgrade_url(url)
        yield url
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


async def seed_sessions(url: str, count: int, *, batch: int = 2_000) -> None:
    """`count` idle users, each with one open conversation carrying provider state, as the bot would
    have left them (half on Discord, half on Telegram)."""
    engine = create_engine(url)
    db = session_factory(engine)
    now = utcnow()
    try:
        for start in range(0, count, batch):
            numbers = range(start, min(start + batch, count))
            async with db.begin() as session:
                users = await session.scalars(
                    insert(User).returning(User.id, sort_by_parameter_order=True),
                    [
                        {
                            "platform": _platform(n),
                            "external_id": str(10**15 + n),
                            "display_name": f"user {n}",
                        }
                        for n in numbers
                    ],
                )
                await session.execute(
                    insert(Conversation),
                    [
                        {
                            "user_id": user_id,
                            "platform": _platform(n),
                            "chat_id": str(10**15 + n),
                            "agent_name": "bench",
                            "provider_state": {"session_id": uuid.uuid4().hex, "turns": n % 40},
                            "status": ConversationStatus.BOT,
                            "last_activity_at": now - timedelta(minutes=n % 50),
                        }
                        for n, user_id in zip(numbers, users, strict=True)
                    ],
                )
    finally:
        await engine.dispose()


def _platform(number: int) -> str:
    return "discord" if number % 2 else "telegram"
