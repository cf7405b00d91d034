"""Switchboard's composition root: the CLI (run, migrate, check-config) and the wiring of one process.

`python bot.py` with no platform tokens runs the console bridge against the built-in demo agent on
SQLite, so the whole flow can be tried with no credentials at all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

import migrations
from agents import create_agent
from agents.http import agent_http_client
from bridges import registry
from bridges.base import Bridge, BridgeStartError
from bridges.catalogue import Catalogue
from bridges.handoff import HandoffService
from bridges.handoff_policy import HandoffPolicy
from bridges.recovery import Recovery
from bridges.registry import build_bridge
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy
from models import create_engine, safe_url, session_factory
from models.sqlite_lock import NoProcess, SQLiteInUse, running_process, sqlite_single_process
from ops.health import OpsServer
from ops.logs import configure_logging, finish_logging
from ops.reload import LiveConfig
from settings import ConfigError, OpsSettings, Settings, StringsSettings, load_settings

log = logging.getLogger("switchboard")


async def migrate(settings: Settings) -> str | None:
    engine = create_engine(settings.database.url.get_secret_value())
    try:
        await migrations.upgrade(engine)
        return await migrations.current_revision(engine)
    finally:
        await engine.dispose()


async def run(settings: Settings, config_path: str | None = None) -> None:
    """Build everything, serve until stopped, and tear down in reverse order.

    The configured platforms serve until SIGTERM/SIGINT (the console also until its input ends); with
    none configured, the fallback platform (the console) serves this terminal. SIGHUP re-reads the
    config file (ops/reload.py).
    """
    url = settings.database.url.get_secret_value()
    async with AsyncExitStack() as stack:
        engine = create_engine(url, echo=settings.database.echo)
        stack.push_async_callback(engine.dispose)
        if settings.database.auto_migrate:
            await migrations.upgrade(engine)
        http = await stack.enter_async_context(agent_http_client())
        agents = {
            name: await stack.enter_async_context(create_agent(name, agent_settings, http=http))
            for name, agent_settings in settings.agents.items()
        }
        db = session_factory(engine)
        bridges: list[Bridge] = []
        catalogue = catalogue_of(settings.strings)
        handoffs = HandoffService(
            db,
            HandoffPolicy.from_settings(settings.handoff),
            surfaces=lambda *place: next(filter(None, (b.surface_for(*place) for b in bridges)), None),
            jump_link=lambda conversation: next(
                filter(None, (b.jump_link(conversation) for b in bridges)), None
            ),
            catalogue=catalogue,
        )
        policy = RelayPolicy.from_settings(settings)
        if not policy.moderators:
            log.warning("no moderator desk is configured: requests for a human will be declined")
        relay = Relay(db, agents, policy, handoffs=handoffs, catalogue=catalogue)
        live = LiveConfig(settings, config_path)
        take_reloads(live, relay)
        bridges.extend(build_bridge(name, config, relay) for name, config in settings.platforms().items())
        if settings.ops.listen:
            ops = OpsServer(engine, *settings.ops.address, checks={b.platform: b.healthy for b in bridges})
            await ops.start()
            stack.push_async_callback(ops.close)
        recovery = Recovery(relay)
        await recovery.prepare()  # before the bridges start: what a crash left waiting goes first
        grace = settings.ops.shutdown_grace_seconds
        for bridge in bridges:
            if registry.PLATFORMS[bridge.platform].fallback:
                print(fallback_banner(settings, bridge.platform), file=sys.stderr)
            stack.push_async_callback(bridge.close, grace)  # closes (and finishes replies) on the way out
            await bridge.start()
            if bridge.desk is not None:  # after start: a desk needs the connected client
                handoffs.desks.append(bridge.desk)
        timers = asyncio.create_task(handoffs.run_timers(), name="handoff-timers")
        stack.callback(timers.cancel)  # before the bridges close, so no tick meets a closed client
        recovering = asyncio.create_task(recovery.run(handoffs.surface_for), name="recovery")
        stack.push_async_callback(finish_within, recovering, grace)
        log.info(
            "serving %s on %s's event loop; stop with SIGTERM or Ctrl-C",
            " and ".join(b.platform for b in bridges),
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )
        if await serve_until_stopped(bridges, reload=live.reload):
            log.warning("shutting down: finishing replies in progress (up to %gs)", grace)


def event_loop(ops: OpsSettings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed and not turned off, else None (asyncio's own). Streaming
    hundreds of replies is mostly network reads, and uvloop's are cheaper (its poller is libuv's, in C)."""
    if not ops.uvloop:
        return None
    try:
        import uvloop
    except ImportError:  # not installed (no wheel for Windows): asyncio's loop does the same work
        return None
    return uvloop.new_event_loop


def take_reloads(live: LiveConfig, relay: Relay) -> None:
    """What a reload reaches: the Relay's policy, the handoff service's, and the strings."""
    live.on_change(lambda new: relay.reconfigure(RelayPolicy.from_settings(new)))
    live.on_change(lambda new: setattr(relay.handoffs, "policy", HandoffPolicy.from_settings(new.handoff)))
    live.on_change(lambda new: relay.catalogue.adopt(catalogue_of(new.strings)))


def catalogue_of(strings: StringsSettings) -> Catalogue:
    return Catalogue(strings.default_locale, strings.overrides, desk_locale=strings.desk_locale)


async def serve_until_stopped(bridges: Sequence[Bridge], reload: Callable[[], object] = bool) -> bool:
    """Serve until SIGTERM/SIGINT (True) or until a bridge stops serving by itself (False); `reload`
    on every SIGHUP."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    waits = [asyncio.create_task(stop.wait()), *(asyncio.create_task(b.finished()) for b in bridges)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return stop.is_set()
    finally:
        for wait in waits:
            wait.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def finish_within(task: asyncio.Task[object], grace: float) -> None:
    """Let `task` finish within `grace` seconds, then cut it off (what it left is reported next start)."""
    try:
        await asyncio.wait_for(task, grace)
    except TimeoutError:
        log.warning("recovery after the last crash was cut off by the shutdown")
    except Exception:
        log.exception("recovery after the last crash failed")


def fallback_banner(settings: Settings, platform: str) -> str:
    default = settings.routing.default_agent
    database = safe_url(settings.database.url.get_secret_value())
    return (
        f"Switchboard: no platform tokens configured, so running the {platform} bridge with agent "
        f"{default!r} ({settings.agents[default].kind}) on {database}."
    )


def console_mode(settings: Settings) -> bool:
    """No platform configured: `run` serves this terminal, where log lines would mix with the chat."""
    return all(registry.PLATFORMS[name].fallback for name in settings.platforms())


def describe(settings: Settings) -> str:
    agents = ", ".join(f"{name} ({cfg.kind})" for name, cfg in settings.agents.items())
    bridges = list(settings.platforms())
    return (
        f"config OK: database {safe_url(settings.database.url.get_secret_value())}; agents: {agents}; "
        f"default agent: {settings.routing.default_agent}; bridges: {', '.join(bridges)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", nargs="?", default="run", choices=["run", "migrate", "check-config", "reload"]
    )
    parser.add_argument("--config", help="TOML file (default: $SWITCHBOARD_CONFIG or ./switchboard.toml)")
    parser.add_argument("--pid", type=int, help="reload: the process to reload (default: the SQLite file's)")
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
        elif args.command == "reload":
            pid = args.pid or running_process(url)
            try:
                os.kill(pid, signal.SIGHUP)
            except OSError as exc:
                raise NoProcess(f"process {pid}: {exc.strerror}") from None
            print(f"asked process {pid} to reload its config ({describe(settings)})")
        elif args.command == "migrate":
            with sqlite_single_process(url):
                revision = asyncio.run(migrate(settings))
            print(f"database {safe_url(url)} is at revision {revision} (head)")
        else:
            with (
                sqlite_single_process(url),  # before migrating or recovering cut-off replies
                asyncio.Runner(loop_factory=event_loop(settings.ops)) as runner,
            ):
                runner.run(run(settings, args.config))
    except ConfigError as exc:
        return fail(f"config error: {exc}", 2)
    except (BridgeStartError, SQLiteInUse) as exc:
        return fail(f"could not start: {exc}", 1)
    except NoProcess as exc:
        return fail(f"could not reload: {exc}", 1)
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
