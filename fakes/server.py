"""Run an aiohttp application on an ephemeral loopback port for the length of a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Self

from aiohttp import web

BACKLOG = 1024


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) of `app`, shutting it down afterwards."""
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    # a real service takes hundreds of connections at once; the default backlog of 128 drops the rest's
    # first SYN, which costs the client a second
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=BACKLOG)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server) and server.sockets
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class LoopbackService:
    """Serves `application()` on loopback for the length of an `async with`; `base_url` says where."""

    base_url = ""

    def application(self) -> web.Application:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._stack = AsyncExitStack()
        self.base_url = await self._stack.enter_async_context(serve(self.application()))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()
