"""The fake Discord itself: it must refuse what Discord refuses, the way Discord does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from fakes.discord import FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(message_limit=5, message_window=60.0, global_limit=8) as fake:
        yield fake


async def test_buckets_answer_429_with_discords_headers(fake: FakeDiscord) -> None:
    owner = fake.add_user("owner")
    guild = fake.add_guild("g", owner)
    first, second = fake.add_text_channel(guild, "a"), fake.add_text_channel(guild, "b")
    auth = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession(headers=auth) as http:

        async def post(channel_id: int) -> aiohttp.ClientResponse:
            url = f"{fake.api_base}/channels/{channel_id}/messages"
            async with http.post(url, json={"content": "hi"}) as response:
                await response.read()
                return response

        statuses = [(await post(first.id)).status for _ in range(5)]
        assert statuses == [200] * 5
        limited = await post(first.id)
        assert limited.status == 429 and limited.headers["X-RateLimit-Remaining"] == "0"
        assert limited.headers["X-RateLimit-Scope"] == "user" and "X-RateLimit-Bucket" in limited.headers
        assert float(limited.headers["X-RateLimit-Reset-After"]) > 50 and limited.headers["Via"]
        # another channel has its own bucket, but the bot as a whole is limited too (8 per window)
        assert (await post(second.id)).status == 200
        assert (await post(second.id)).status == 200
        refused = await post(second.id)
        assert refused.status == 429 and refused.headers["X-RateLimit-Global"] == "true"
        async with http.post(
            f"{fake.api_base}/channels/{first.id}/messages", json={"content": "x"}
        ) as response:
            body = await response.json()
        assert body["global"] is True and body["retry_after"] > 0
    assert fake.rate_limited == 3


async def test_refuses_what_discord_refuses(fake: FakeDiscord) -> None:
    owner = fake.add_user("owner")
    channel = fake.add_text_channel(fake.add_guild("g", owner), "a")
    url = f"{fake.api_base}/channels/{channel.id}/messages"
    row = {"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": "c" * 101}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"content": "hi"}) as response:
            assert response.status == 401
        auth = {"Authorization": f"Bot {fake.token}"}
        for body in ({"content": "x" * 2001}, {"content": ""}, {"content": "x", "components": [row]}):
            async with http.post(url, json=body, headers=auth) as response:
                assert response.status == 400, body
