"""The HTTP client the networked agent backends share: httpx's interface on aiohttp's connections.

A streamed reply is hundreds of network reads, and at hundreds of replies at once the cost of one read
is what limits the bot. httpx's own transport (httpcore on anyio) pauses and resumes the socket, arms a
timer and climbs eight async generators for every read; aiohttp's C parser and its buffered reader do
the same work for about a third of the CPU (0.074 against 0.026 ms per SSE event, 200 streams on the
build machine). So the backends keep httpx (its API, errors and request building), and this transport
hands the bytes to aiohttp, mapping aiohttp's errors onto httpx's so `agents.remote` reads them as
before. A proxy from the environment still goes through httpx's own transport (httpx mounts it).

The pool holds `MAX_CONNECTIONS` provider connections: each streaming reply keeps one for its whole
length, and httpx's default of 100 made the 101st concurrent reply wait for another to end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx

MAX_CONNECTIONS = 2000
"""Provider connections open at once, across every agent: more than the replies one process streams."""

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    # the most specific first: several of aiohttp's errors derive from others here
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.NetworkError),
    (TimeoutError, httpx.ReadTimeout),
)


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        mapped = next(httpx_error for error, httpx_error in _ERRORS if isinstance(exc, error))
        raise mapped(f"{type(exc).__name__}: {exc}", request=request) from exc


class _Body(httpx.AsyncByteStream):
    """A response body as aiohttp buffers it: each step yields every byte that has arrived."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for data in self._response.content.iter_any():
                yield data

    async def aclose(self) -> None:
        self._response.release()  # a body left unread closes its connection instead of pooling it


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends each request with an aiohttp session it owns."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, ssl=httpx.create_ssl_context())
        # httpx has set every header it means to send, and decodes the body itself
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("Content-Type",)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        with _as_httpx_errors(request):
            response = await self._session.request(
                request.method,
                str(request.url),
                # the body goes whole, so aiohttp sets its length (httpx may have chosen chunked)
                headers=[(k, v) for k, v in request.headers.multi_items() if k != "transfer-encoding"],
                data=await request.aread() or None,
                allow_redirects=False,  # httpx follows redirects itself, when asked to
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        await self._session.close()


def agent_http_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    """The client bot.py gives every HTTP agent backend; build it inside the running event loop."""
    return httpx.AsyncClient(transport=AiohttpTransport(), timeout=timeout)
