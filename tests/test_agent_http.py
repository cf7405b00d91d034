"""The HTTP client the agent backends share (agents/http.py, as bot.py builds it), against loopback fakes.

The contract suite (tests/agents/) runs every backend's errors, retries and timeouts through this client;
here is what is its own: how many replies it streams at once, and what it sends and gets back.
"""

from __future__ import annotations

import asyncio

import httpx
from aiohttp import web

from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from fakes.http import Gate
from fakes.openai import FakeOpenAI, content
from fakes.server import serve
from tests.agent_support import FAST_RETRIES, checked, collect, text_of, turn
from tests.polling import eventually

STREAMS = 150
"""More than the 100 connections httpx pools by default."""


async def test_more_replies_stream_at_once_than_httpx_pools_by_default(http: httpx.AsyncClient) -> None:
    release = asyncio.Event()
    async with checked(FakeOpenAI(api_key=None)) as fake:
        for _ in range(STREAMS):
            fake.script(content("hi"), Gate(release))
        patient = FAST_RETRIES | {"first_event_timeout": 10.0, "idle_timeout": 10.0}
        settings = OpenAICompatSettings(base_url=fake.url, model=fake.model, **patient)
        agent = OpenAICompatAgent("gpt", settings, http)
        replies = [asyncio.create_task(collect(agent, turn())) for _ in range(STREAMS)]

        async def all_streaming() -> bool:
            return len(fake.requests) == STREAMS

        await eventually(all_streaming, what=f"{STREAMS} replies streaming at once")
        release.set()
        assert [text_of(events) for events in await asyncio.gather(*replies)] == ["hi"] * STREAMS


async def test_requests_and_responses_pass_through_unchanged(http: httpx.AsyncClient) -> None:
    """Headers, bodies (a multipart upload too), statuses and compressed answers are httpx's to handle."""
    seen: list[tuple[str, str, bytes]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.headers.get("Content-Type", ""), request.headers["X-Key"], body))
        response = web.json_response({"got": len(body), "pad": "x" * 2000}, status=201)
        response.enable_compression(web.ContentCoding.gzip)
        return response

    app = web.Application()
    app.router.add_post("/echo", echo)
    async with serve(app) as base:
        posted = await http.post(f"{base}/echo", json={"a": 1}, headers={"X-Key": "k"})
        uploaded = await http.post(
            f"{base}/echo", files={"file": ("a.txt", b"hello")}, headers={"X-Key": "f"}
        )
    assert posted.headers["content-encoding"] == "gzip" and posted.status_code == 201
    assert posted.json()["got"] == len(b'{"a":1}') and seen[0] == ("application/json", "k", b'{"a":1}')
    assert uploaded.status_code == 201 and seen[1][0].startswith("multipart/form-data; boundary=")
    assert b'filename="a.txt"' in seen[1][2] and b"hello" in seen[1][2]
