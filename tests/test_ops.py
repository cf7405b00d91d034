"""Operations: the health and metrics endpoint, and JSON logs with secrets redacted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agents.base import AgentUnavailable
from bridges.relay import Relay
from fakes.telegram.harness import ScriptedAgent
from models import create_engine
from ops.health import OpsServer
from ops.logs import configure_logging
from tests.conftest import free_port
from tests.surfaces import RecordingSurface
from tests.test_relay import POLICY, inbound


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        metric, _, rest = series.partition("{")
        if metric == name and ",".join(sorted(rest.rstrip("}").split(","))) == wanted:
            return float(value)
    return 0.0


async def test_health_and_metrics_follow_real_replies(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    bridge_up = True
    server = OpsServer(engine, "127.0.0.1", 0, checks={"discord": lambda: bridge_up})
    base = await server.start()
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok", "database": "ok", "discord": "ok"}
            bridge_up = False
            assert (await client.get("/healthz")).status_code == 503

            before = (await client.get("/metrics")).text
            agent = ScriptedAgent("metered")
            agent.script["boom"] = AgentUnavailable("provider down")
            relay = Relay(db, {"scripted": agent}, POLICY)
            await relay.handle(inbound("hello"), RecordingSurface())
            await relay.handle(inbound("boom"), RecordingSurface())
            after = (await client.get("/metrics")).text
    finally:
        await server.close()

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("switchboard_replies_total", platform="console", agent="metered", outcome="ok") == 1
    assert delta("switchboard_replies_total", platform="console", agent="metered", outcome="agent_error") == 1
    assert delta("switchboard_provider_errors_total", agent="metered", error="AgentUnavailable") == 1
    assert delta("switchboard_first_text_seconds_count", platform="console") == 2


async def test_health_reports_an_unreachable_database() -> None:
    engine = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    server = OpsServer(engine, "127.0.0.1", 0)
    base = await server.start()
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            response = await client.get("/healthz")
        assert response.status_code == 503 and response.json()["database"] == "down"
    finally:
        await server.close()
        await engine.dispose()


def test_json_logs_are_one_object_per_line_and_never_show_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = "sk-test-0123456789"
    configure_logging("INFO", secrets=[secret], fmt="json")
    log = logging.getLogger("switchboard.test")
    log.info("calling the provider with %s", secret)
    try:
        raise RuntimeError(f"provider refused key {secret}")
    except RuntimeError:
        log.exception("provider call failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["logger"]) for line in lines] == [
        ("INFO", "switchboard.test"),
        ("ERROR", "switchboard.test"),
    ]
    assert lines[0]["message"] == "calling the provider with [redacted]"
    assert "RuntimeError: provider refused key [redacted]" in lines[1]["exc_info"]
    assert secret not in json.dumps(lines)
    logging.getLogger().handlers.clear()
