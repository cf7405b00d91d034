"""The Telegram webhook under hostile load: the real bridge in webhook mode on a loopback port, attacked
with raw sockets that send exactly the bytes (and at the pace) an attacker would, while the fake Bot API
delivers real updates to it by POST."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.telegram.config import TelegramConfig
from fakes.telegram.harness import Telegram, running
from fakes.telegram.server import SECRET_HEADER, FakeTelegram
from tests.conftest import free_port

SECRET = "webhook-secret_under-attack"
PATH = "/telegram/updates"
MIB = 1 << 20
HEADERS = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
"""What Telegram sends with each update."""

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For attacks refused before any update reaches the relay: the database plays no part in them."""


@asynccontextmanager
async def webhook(db: async_sessionmaker[AsyncSession], **limits: Any) -> AsyncIterator[tuple[Telegram, int]]:
    """The bridge serving its webhook on a free loopback port; yields it and the port."""
    port = free_port()
    async with running(
        db,
        FakeTelegram(),
        webhook_url=f"http://127.0.0.1:{port}{PATH}",
        webhook_listen=f"127.0.0.1:{port}",
        webhook_secret=SecretStr(SECRET),
        **limits,
    ) as telegram:
        yield telegram, port


class RawClient(asyncio.Protocol):
    """One TCP connection that sends what the test writes and keeps every byte of the answer, even when the
    server then resets the connection (a stream reader would drop buffered data on the reset)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed_at: float | None = None
        self.sent = 0
        self._changed = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._transport: asyncio.Transport | None = None

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[RawClient]:
        transport, client = await asyncio.get_running_loop().create_connection(cls, "127.0.0.1", port)
        try:
            yield client
        finally:
            transport.abort()

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        self._changed.set()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_at = time.monotonic()
        self._writable.set()
        self._changed.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def send(self, data: bytes) -> bool:
        """Write `data` once the kernel takes more; False if the connection is gone."""
        await self._writable.wait()
        if self.closed or self._transport is None:
            return False
        self._transport.write(data)
        self.sent += len(data)
        return True

    async def until(self, condition: Callable[[], bool], within: float, what: str) -> None:
        """Return once `condition()` holds, re-checked whenever bytes arrive or the connection ends."""
        try:
            async with asyncio.timeout(within):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {within} s") from None

    async def status(self, within: float = 2.0) -> int:
        """The status code of the first response."""
        await self.until(lambda: b"\r\n" in self.received or self.closed, within, "response")
        assert b"\r\n" in self.received, "the connection closed without an answer"
        return int(self.received.split(b" ", 2)[1])

    async def until_closed(self, within: float) -> float:
        """Seconds from now until the server closes the connection."""
        start = time.monotonic()
        await self.until(lambda: self.closed, within, "close by the server")
        assert self.closed_at is not None
        return self.closed_at - start


def head(
    *, secret: str | None = SECRET, length: int | None = None, method: str = "POST", path: str = PATH
) -> bytes:
    """A request's headers: with a Content-Length if given, else chunked."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if secret is not None:
        lines.append(f"{SECRET_HEADER}: {secret}")
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.e2e
@SQLITE_ONLY
@pytest.mark.parametrize("length", [90 * MIB, None], ids=["content-length", "chunked"])
async def test_a_forged_secret_is_refused_on_the_headers_alone(
    db: async_sessionmaker[AsyncSession], length: int | None
) -> None:
    """The answer comes before a byte of the body is sent (PTB's tornado server first read up to 100 MB)."""
    async with webhook(db) as (telegram, port):
        for secret in ("wrong", None, SECRET + "x", "é"):
            async with RawClient.connect(port) as client:
                await client.send(head(secret=secret, length=length))
                assert await client.status() == 403
                await client.until_closed(within=2.0)
        assert telegram.fake.deliveries == []


@pytest.mark.e2e
@SQLITE_ONLY
async def test_a_forged_upload_is_cut_off_long_before_its_end(db: async_sessionmaker[AsyncSession]) -> None:
    """An attacker streaming 90 MiB with a wrong secret is disconnected with most of it unsent."""
    async with webhook(db) as (_, port), RawClient.connect(port) as client:
        await client.send(head(secret="wrong", length=90 * MIB))
        block = b"x" * (64 << 10)
        while client.sent < 90 * MIB and await client.send(block):
            pass
        await client.until_closed(within=2.0)
        assert client.sent < 16 * MIB  # what loopback socket buffers took before the close came through
        assert client.received.startswith(b"HTTP/1.1 403")


@pytest.mark.e2e
@SQLITE_ONLY
async def test_a_body_over_the_cap_gets_413_without_being_buffered(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with webhook(db) as (telegram, port):
        async with RawClient.connect(port) as client:  # declared too big: refused before it is sent
            await client.send(head(length=2 * MIB))
            assert await client.status() == 413
            await client.until_closed(within=2.0)

        async with RawClient.connect(port) as client:  # chunked: cut off once past the cap
            await client.send(head())
            block = chunk(b" " * (64 << 10))
            while client.sent < 2 * MIB and await client.send(block):
                pass
            await client.until_closed(within=2.0)
            assert client.received.startswith(b"HTTP/1.1 413")

        async with aiohttp.ClientSession() as session:  # a body at the cap still goes through
            update = json.dumps({"update_id": 7, "padding": " " * (MIB - 64)})
            async with session.post(
                f"http://127.0.0.1:{port}{PATH}", data=update, headers=HEADERS
            ) as response:
                assert response.status == 200
        assert telegram.bridge.config.webhook_max_body_bytes == MIB


@pytest.mark.e2e
@SQLITE_ONLY
async def test_idle_connections_are_closed_after_the_keepalive_timeout(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with webhook(db, webhook_keepalive_timeout=0.5) as (_, port):
        async with RawClient.connect(port) as silent, RawClient.connect(port) as served:
            opened = time.monotonic()
            body = b'{"update_id": 1}'  # a valid update no handler takes: answered 200, kept alive
            await served.send(head(length=len(body)) + body)
            assert await served.status() == 200
            answered = time.monotonic()
            await silent.until_closed(within=12.0)
            await served.until_closed(within=12.0)
            assert silent.closed_at is not None and served.closed_at is not None
            # bounds loose enough for a loaded machine: the point is that the timeout, not the peer, closed it
            assert 0.4 < silent.closed_at - opened < 10.0
            assert 0.4 < served.closed_at - answered < 10.0


@pytest.mark.e2e
@SQLITE_ONLY
@pytest.mark.parametrize("served_first", [False, True], ids=["new-connection", "kept-alive"])
async def test_a_client_trickling_its_headers_is_cut_off(
    db: async_sessionmaker[AsyncSession], served_first: bool
) -> None:
    """Slowloris: one byte every 0.5 s, on a new connection or after a request answered on it. The
    keep-alive timeout is far off; the header deadline is not."""
    limits = {"webhook_header_timeout": 1.0, "webhook_keepalive_timeout": 30.0}
    async with webhook(db, **limits) as (_, port), RawClient.connect(port) as client:
        if served_first:
            body = b'{"update_id": 1}'
            await client.send(head(length=len(body)) + body)
            assert await client.status() == 200
        answered = len(client.received)
        start = time.monotonic()

        async def trickle() -> None:
            for byte in head(length=10):
                if not await client.send(bytes([byte])):
                    return
                await asyncio.sleep(0.5)  # the attacker's pace, not a wait for a condition

        trickling = asyncio.create_task(trickle())
        try:
            await client.until_closed(within=15.0)
        finally:
            trickling.cancel()
        assert (
            0.9 < time.monotonic() - start < 15.0
        )  # the header deadline (1 s), far before keep-alive (30 s)
        assert len(client.received) == answered  # cut off, not answered


@pytest.mark.e2e
@SQLITE_ONLY
async def test_a_client_trickling_its_body_gets_408(db: async_sessionmaker[AsyncSession]) -> None:
    async with webhook(db, webhook_body_timeout=0.5) as (_, port), RawClient.connect(port) as client:
        await client.send(head(length=100) + b'{"update_id":')
        start = time.monotonic()
        assert await client.status(within=10.0) == 408
        assert 0.4 < time.monotonic() - start < 10.0
        await client.until_closed(within=10.0)


@pytest.mark.e2e
@SQLITE_ONLY
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b"null",
        b'{"message": {"text": "no update_id"}}',
        b'{"update_id": 3, "message": {"message_id": "x"}}',
        b"[" * 200_000,  # nested past the JSON parser's recursion limit
    ],
    ids=["text", "bytes", "array", "null", "no-id", "bad-message", "deep"],
)
async def test_a_body_that_is_not_an_update_gets_400_and_a_log_line(
    db: async_sessionmaker[AsyncSession], body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with webhook(db) as (_, port), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}{PATH}"
        with caplog.at_level(logging.WARNING, logger="bridges.telegram.webhook"):
            async with session.post(url, data=body, headers=HEADERS) as response:
                assert response.status == 400
        assert "not an update" in caplog.text
        assert SECRET not in caplog.text
        async with session.post(url, data=b'{"update_id": 2}', headers=HEADERS) as response:
            assert response.status == 200  # the server lives on


@pytest.mark.e2e
@SQLITE_ONLY
@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (head(length=2, path="/elsewhere"), 404),
        (head(length=2, secret="wrong", path="/elsewhere"), 404),
        (head(length=2, method="GET"), 405),
        (head(length=2, method="GET", secret=None), 403),
    ],
    ids=["path", "path-forged", "method", "method-forged"],
)
async def test_wrong_paths_and_methods_are_refused_without_the_body(
    db: async_sessionmaker[AsyncSession], request_head: bytes, status: int
) -> None:
    async with webhook(db) as (_, port), RawClient.connect(port) as client:
        await client.send(request_head)
        assert await client.status() == status
        await client.until_closed(within=2.0)


@pytest.mark.e2e
async def test_good_updates_are_answered_end_to_end(db: async_sessionmaker[AsyncSession]) -> None:
    """Telegram's own deliveries, and a chunked POST, reach the handlers as with PTB's server."""
    async with webhook(db) as (telegram, port):
        fake = telegram.fake
        alice, bob = fake.user("Alice"), fake.user("Bob")
        alices, bobs = fake.private_chat(alice), fake.private_chat(bob)
        fake.say(alices, alice, "hello")
        update = {
            "update_id": 500,
            "message": {
                "message_id": 90,
                "date": int(time.time()),
                "chat": bobs.to_json(),
                "from": bob.to_json(),
                "text": "chunked",
            },
        }

        async def pieces() -> AsyncIterator[bytes]:
            encoded = json.dumps(update).encode()
            yield encoded[:20]
            yield encoded[20:]

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}{PATH}", data=pieces(), headers=HEADERS) as response,
        ):
            assert response.status == 200
        await telegram.final(alices, "scripted: hello (#1)")
        await telegram.final(bobs, "scripted: chunked (#1)")
        assert fake.deliveries == [(1, 200)]
        assert fake.count("getUpdates") == 0


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"webhook_max_body_bytes": 1000}, "greater than or equal to 16384"),
        ({"webhook_max_body_bytes": 1 << 30}, "less than or equal to 67108864"),
        ({"webhook_header_timeout": 0}, "greater than 0"),
        ({"webhook_body_timeout": -1}, "greater than 0"),
        ({"webhook_keepalive_timeout": 0}, "greater than 0"),
    ],
)
def test_webhook_limits_are_checked(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TelegramConfig.model_validate({"token": "1:t", **settings})
