"""The server Telegram POSTs updates to, in webhook mode: ours, on aiohttp, in place of PTB's tornado one.

PTB's server buffers a body of up to 100 MB before it looks at the secret, keeps an idle connection for an
hour and compares the secret in variable time. This one answers on the headers alone (a wrong secret, a
wrong path or a declared size over the cap is refused before any of the body is read, and the connection
closed), reads at most `webhook_max_body_bytes`, and gives each client a deadline for its headers, its
body and its idle time. A good update goes into the Application's update_queue exactly as PTB's server
put it there, so the handlers do not change.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import StreamReader, web
from telegram import Update
from telegram.ext import ExtBot

from bridges.telegram.config import TelegramConfig

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SHUTDOWN_GRACE = 1.0
"""Seconds a request still arriving at shutdown gets; Telegram sends again whatever was not answered."""


class WebhookServer:
    """Serves `webhook_listen` for the path of `webhook_url` between `start()` and `stop()`."""

    def __init__(self, config: TelegramConfig, bot: ExtBot[Any], updates: asyncio.Queue[object]) -> None:
        if config.webhook_url is None or config.webhook_secret is None:
            raise ValueError("a webhook server needs webhook_url and webhook_secret")
        self._config = config
        self._path = urlsplit(config.webhook_url).path or "/"  # the proxy forwards the public path unchanged
        self._secret = config.webhook_secret.get_secret_value().encode()
        self._bot = bot
        self._updates = updates
        self._connections: dict[asyncio.BaseTransport, _HeadDeadline] = {}
        self._http: web.Server | None = None
        self._listener: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind the address; raises OSError if that fails (the port is taken, say)."""
        self._http = web.Server(
            self._handle,
            keepalive_timeout=self._config.webhook_keepalive_timeout,
            lingering_time=0,  # never read the rest of a refused body: close the connection instead
            auto_decompress=False,  # Telegram does not compress; a gzip bomb stays a small invalid body
            access_log=None,  # one line per forged request would let anyone fill the logs
        )
        host, port = self._config.webhook_address
        self._listener = await asyncio.get_running_loop().create_server(self._connection, host, port)

    async def stop(self) -> None:
        """Stop listening and close every connection, after at most `SHUTDOWN_GRACE` seconds."""
        if self._listener is None or self._http is None:
            return
        self._listener.close()
        self._http.pre_shutdown()  # idle keep-alive connections close now, not after the grace
        await self._http.shutdown(SHUTDOWN_GRACE)
        await self._listener.wait_closed()
        self._listener = self._http = None

    def _connection(self) -> asyncio.Protocol:
        assert self._http is not None
        return _HeadDeadline(self._http(), self._config.webhook_header_timeout, self._connections)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = self._connections.get(request.transport) if request.transport else None
        if connection is not None:
            connection.head_received()
        try:
            return await self._answer(request)
        finally:
            if connection is not None:
                connection.request_done()

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        """Everything that can be decided on the headers is decided before the body is touched."""
        if request.rel_url.raw_path != self._path:
            return _refuse(404, "Not found.")
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._secret):
            log.debug("telegram: webhook request without the right secret from %s", request.remote)
            return _refuse(403, "Wrong or missing secret token.")
        if request.method != "POST":
            return _refuse(405, "Only POST is accepted.")
        cap = self._config.webhook_max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            return _refuse(413, f"The body is over {cap} bytes.")
        try:
            async with asyncio.timeout(self._config.webhook_body_timeout):
                body = await _read_at_most(request.content, cap)
        except TimeoutError:
            return _refuse(408, "The body took too long to arrive.")
        if body is None:
            return _refuse(413, f"The body is over {cap} bytes.")
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            update = Update.de_json(data, self._bot)
        except Exception as exc:  # hostile JSON fails in many ways (RecursionError too); none may crash
            # the type only: the message may quote the body, which holds users' text
            log.warning("telegram: refused a webhook body that is not an update (%s)", type(exc).__name__)
            return _refuse(400, "The body is not a Telegram update.")
        self._bot.insert_callback_data(update)  # as PTB's server does, for arbitrary callback data
        await self._updates.put(update)
        return web.Response()


async def _read_at_most(content: StreamReader, cap: int) -> bytes | None:
    """The whole body, or None as soon as it passes `cap` bytes (a chunked body declares no length)."""
    body = bytearray()
    while chunk := await content.readany():
        body += chunk
        if len(body) > cap:
            return None
    return bytes(body)


def _refuse(status: int, text: str) -> web.Response:
    """A short answer that also closes the connection: a client refused once gets no second try on it."""
    response = web.Response(status=status, text=text)
    response.force_close()
    return response


class _HeadDeadline(asyncio.Protocol):
    """One client connection: aiohttp's protocol, plus the deadline on request headers that aiohttp lacks.

    aiohttp closes a connection idle for `keepalive_timeout`, but a client trickling its headers a byte at a
    time (slowloris) counts as idle only at that pace. Here, from the first byte of each request until its
    handler runs, the client has `timeout` seconds; then the connection is closed.
    """

    def __init__(
        self,
        http: asyncio.Protocol,
        timeout: float,
        registry: dict[asyncio.BaseTransport, _HeadDeadline],
    ) -> None:
        self._http = http
        self._timeout = timeout
        self._registry = registry
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False

    def head_received(self) -> None:
        """The handler runs: the headers came in time, and the body has deadlines of its own."""
        self._in_request = True
        self._cancel_deadline()

    def request_done(self) -> None:
        """The handler answered: the next byte starts the next request's headers."""
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._registry[transport] = self
        self._http.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._transport is not None:
            self._registry.pop(self._transport, None)
        self._http.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_request and self._deadline is None and self._transport is not None:
            self._deadline = asyncio.get_running_loop().call_later(self._timeout, self._transport.close)
        self._http.data_received(data)

    def eof_received(self) -> bool | None:
        return self._http.eof_received()

    def pause_writing(self) -> None:
        self._http.pause_writing()

    def resume_writing(self) -> None:
        self._http.resume_writing()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
