"""Switchboard's composition root: the CLI (run, migrate, check-config) and the wiring of one process.

`python bot.py` with no platform tokens runs the console bridge against the built-in demo agent on
SQLite, so the whole flow can be tried with no credentials at all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx

import migrations
from agents import create_agent
from bridges.console import ConsoleBridge
from bridges.discord import DiscordBridge, DiscordStartError
from bridges.handoff import HandoffPolicy, HandoffService, JumpLink
from bridges.recovery import Recovery
from bridges.relay import Relay, RelayPolicy
from bridges.surface import Surface, SurfaceFactory
from bridges.telegram import TelegramBridge, TelegramStartError
from models import Conversation, create_engine, safe_url, session_factory
from models.sqlite_lock import SQLiteInUse, sqlite_single_process
from ops.health import OpsServer
from ops.logs import configure_logging, finish_logging
from settings import ConfigError, Settings, load_settings

log = logging.getLogger("switchboard")


async def migrate(settings: Settings) -> str | None:
    engine = create_engine(settings.database.url.get_secret_value())
    try:
        await migrations.upgrade(engine)
        return await migrations.current_revision(engine)
    finally:
        await engine.dispose()


async def run(settings: Settings) -> None:
    """Build everything, serve until stopped, and tear down in reverse order.

    With a `[discord]` or `[telegram]` section the platform bridges serve until SIGTERM/SIGINT;
    with neither, the console bridge serves this terminal.
    """
    url = settings.database.url.get_secret_value()
    async with AsyncExitStack() as stack:
        engine = create_engine(url, echo=settings.database.echo)
        stack.push_async_callback(engine.dispose)
        if settings.database.auto_migrate:
            await migrations.upgrade(engine)
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)))
        agents = {
            name: await stack.enter_async_context(create_agent(name, agent_settings, http=http))
            for name, agent_settings in settings.agents.items()
        }
        db = session_factory(engine)
        factories: dict[str, SurfaceFactory] = {}
        jump_links: dict[str, JumpLink] = {}

        def surface_for(platform: str, chat_id: str, thread_id: str) -> Surface | None:
            factory = factories.get(platform)
            return factory(platform, chat_id, thread_id) if factory else None

        def jump_link(conversation: Conversation) -> str | None:
            link = jump_links.get(conversation.platform)
            return link(conversation) if link else None

        handoffs = HandoffService(
            db,
            HandoffPolicy(
                expire_after=timedelta(minutes=settings.handoff.expire_after_minutes),
                escalate_after=(
                    timedelta(minutes=settings.handoff.escalate_after_minutes)
                    if settings.handoff.escalate_after_minutes
                    else None
                ),
                recent_entries=settings.handoff.recent_entries,
            ),
            surfaces=surface_for,
            jump_link=jump_link,
        )
        if settings.ops.listen:
            ops = OpsServer(engine, *settings.ops.address)
            await ops.start()
            stack.push_async_callback(ops.close)
        relay = Relay(
            db,
            agents,
            RelayPolicy(
                default_agent=settings.routing.default_agent,
                idle_timeout=timedelta(minutes=settings.routing.idle_timeout_minutes),
                handoff_expiry=timedelta(minutes=settings.handoff.expire_after_minutes),
                bindings={(b.scope, b.id): b.agent for b in settings.routing.bindings},
                user_messages_per_minute=settings.limits.user_messages_per_minute,
                user_burst=settings.limits.user_burst,
                max_input_chars=settings.limits.max_input_chars,
                handoffs_per_hour=settings.limits.handoffs_per_hour,
                max_reply_chars=settings.limits.max_reply_chars,
                instance=settings.ops.instance,
            ),
            handoffs=handoffs,
        )
        grace = settings.ops.shutdown_grace_seconds
        bridges = platform_bridges(settings, relay)
        recovery = Recovery(relay)
        if bridges:  # before they start, so what a crash left waiting goes ahead of anything new
            await recovery.prepare()
        for bridge in bridges:
            stack.push_async_callback(bridge.close, grace)  # closes (and finishes replies) on the way out
            await bridge.start()
            factories[bridge.platform] = bridge.surface_for
            jump_links[bridge.platform] = bridge.jump_link
            if bridge.desk is not None:  # after start: a desk needs the connected client
                handoffs.desks.append(bridge.desk)
        timers = asyncio.create_task(handoffs.run_timers(), name="handoff-timers")
        stack.callback(timers.cancel)  # before the bridges close, so no tick meets a closed client
        if factories:
            # Answering what a crash left behind takes as long as replies do: serve (and heed SIGTERM)
            # meanwhile, and give it the same grace as replies in progress on the way out.
            recovering = asyncio.create_task(recovery.run(surface_for), name="recovery")
            stack.push_async_callback(finish_within, recovering, grace)
            log.info("serving %s; stop with SIGTERM or Ctrl-C", " and ".join(factories))
            await stop_signal()
            log.warning("shutting down: finishing replies in progress (up to %gs)", grace)
            return
        default = settings.routing.default_agent
        print(
            f"Switchboard: no platform tokens configured, so running the console bridge with agent "
            f"{default!r} ({settings.agents[default].kind}) on {safe_url(url)}.",
            file=sys.stderr,
        )
        console = ConsoleBridge(
            relay,
            user_id=settings.console.user_id,
            display_name=settings.console.display_name,
            edit_interval=settings.streaming.console_edit_interval,
        )
        await serve_until_stopped(console, grace)


def platform_bridges(settings: Settings, relay: Relay) -> list[DiscordBridge | TelegramBridge]:
    bridges: list[DiscordBridge | TelegramBridge] = []
    if settings.discord is not None:
        bridges.append(DiscordBridge(settings.discord, relay, settings.streaming.discord_edit_interval))
    if settings.telegram is not None:
        bridges.append(TelegramBridge(settings.telegram, relay, settings.streaming.telegram_edit_interval))
    return bridges


async def finish_within(task: asyncio.Task[object], grace: float) -> None:
    """Let `task` finish within `grace` seconds, then cut it off (what it left is reported next start)."""
    try:
        await asyncio.wait_for(task, grace)
    except TimeoutError:
        log.warning("recovery after the last crash was cut off by the shutdown")
    except Exception:
        log.exception("recovery after the last crash failed")


async def stop_signal() -> None:
    """Return on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def serve_until_stopped(bridge: ConsoleBridge, grace: float) -> None:
    """Serve until the bridge ends or SIGTERM/SIGINT; then let replies in progress finish within `grace`.

    A reply still unfinished after that is cut off; it stays marked as pending and is reported to its
    user on the next start.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(bridge.run(), name="bridge")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not serving.done():
            log.warning("shutting down: finishing replies in progress (up to %gs)", grace)
            bridge.stop()
            try:
                await asyncio.wait_for(serving, grace)
            except TimeoutError:
                log.warning("replies still in progress were cut off; they are reported on the next start")
        else:
            await serving
    finally:
        stopping.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def console_mode(settings: Settings) -> bool:
    """No platform configured: `run` serves this terminal, where log lines would mix with the chat."""
    return settings.discord is None and settings.telegram is None


def describe(settings: Settings) -> str:
    agents = ", ".join(f"{name} ({cfg.kind})" for name, cfg in settings.agents.items())
    bridges = [name for name in ("discord", "telegram") if getattr(settings, name) is not None] or ["console"]
    return (
        f"config OK: database {safe_url(settings.database.url.get_secret_value())}; agents: {agents}; "
        f"default agent: {settings.routing.default_agent}; bridges: {', '.join(bridges)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "migrate", "check-config"])
    parser.add_argument("--config", help="TOML file (default: $SWITCHBOARD_CONFIG or ./switchboard.toml)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show INFO logs in console mode (platforms always log them)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(
            settings.logging.level,
            secrets=settings.secrets(),
            fmt=settings.logging.format,
            quiet=args.command == "run" and console_mode(settings) and not args.verbose,
        )
        url = settings.database.url.get_secret_value()
        if args.command == "check-config":
            print(describe(settings))
        elif args.command == "migrate":
            with sqlite_single_process(url):
                revision = asyncio.run(migrate(settings))
            print(f"database {safe_url(url)} is at revision {revision} (head)")
        else:
            with sqlite_single_process(url):  # before migrating or recovering cut-off replies
                asyncio.run(run(settings))
    except ConfigError as exc:
        return fail(f"config error: {exc}", 2)
    except (DiscordStartError, TelegramStartError, SQLiteInUse) as exc:
        return fail(f"could not start: {exc}", 1)
    except KeyboardInterrupt:
        return 130
    return 0


def fail(problem: str, status: int) -> int:
    """End with one line naming the problem: the last on stderr, alone, whatever threads still log."""
    finish_logging()
    sys.stderr.write(f"switchboard: {problem}\n")
    sys.stderr.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
