"""The operator's endpoint: `/healthz` (database answering, bridges connected) and `/metrics`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

DATABASE_CHECK_SECONDS = 2.0


class OpsServer:
    """`checks` name a component (a bridge) and say whether it is healthy right now."""

    def __init__(
        self,
        engine: AsyncEngine,
        host: str,
        port: int,
        *,
        checks: Mapping[str, Callable[[], bool]] | None = None,
    ) -> None:
        self.engine = engine
        self.host, self.port = host, port
        self.checks = dict(checks or {})
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> str:
        """Start serving; return the base URL (the port is chosen by the OS when 0)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        port = server.sockets[0].getsockname()[1] if isinstance(server, asyncio.Server) else self.port
        url = f"http://{self.host}:{port}"
        log.info("health and metrics on %s", url)
        return url

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        components = {"database": await self._database_ok()}
        components.update({name: check() for name, check in self.checks.items()})
        healthy = all(components.values())
        body = {
            "status": "ok" if healthy else "unhealthy",
            **{k: "ok" if v else "down" for k, v in components.items()},
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _database_ok(self) -> bool:
        try:
            async with asyncio.timeout(DATABASE_CHECK_SECONDS), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unreachable (%s)", type(exc).__name__)
            return False
        return True
