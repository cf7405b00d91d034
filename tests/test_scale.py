"""Running at scale: Discord shards split across processes on one database, and Telegram in webhook mode.

Both use the real clients (discord.py, python-telegram-bot, and our aiohttp webhook server) against the
loopback fakes, which route gateway events by shard and deliver Telegram updates by POST.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.base import BridgeStartError
from bridges.discord.bridge import DiscordBridge
from bridges.discord.config import DiscordConfig
from bridges.relay import Relay
from bridges.telegram.bridge import ALLOWED_UPDATES, TelegramBridge
from bridges.telegram.config import TelegramConfig
from fakes.discord import FakeDiscord
from fakes.discord.server import shard_of
from fakes.discord.state import snowflake
from fakes.telegram.harness import POLICY, ScriptedAgent
from fakes.telegram.server import SECRET_HEADER, FakeTelegram, Webhook
from tests.conftest import free_port
from tests.discord_support import discord_config

SECRET = "s3cret-token_for-webhooks"


def relay(db: async_sessionmaker[AsyncSession], instance: str) -> tuple[Relay, ScriptedAgent]:
    """One process's relay: its agent answers in its own name, so a reply shows who answered it."""
    agent = ScriptedAgent(instance)
    policy = dataclasses.replace(POLICY, instance=instance)
    return Relay(db, {"scripted": agent}, policy), agent


def guild_id_on(shard: int, shard_count: int) -> int:
    """A fresh snowflake whose guild Discord would route to `shard`."""
    timestamp = snowflake() >> 22
    guild_id = (timestamp - timestamp % shard_count + shard) << 22
    assert shard_of(guild_id, shard_count) == shard
    return guild_id


@pytest.mark.e2e
async def test_two_shard_processes_answer_each_guild_once_from_its_shard(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with FakeDiscord(shards=2) as fake:
        owner, alice = fake.add_user("owner"), fake.add_user("alice")
        channels = []
        for shard in (0, 1):
            guild = fake.add_guild(f"server {shard}", owner, guild_id=guild_id_on(shard, 2))
            fake.add_member(guild, alice)
            channels.append(fake.add_text_channel(guild, "general"))
        dm = fake.dm_channel(alice)
        bridges, agents = [], []
        for shard in (0, 1):  # two processes: own relay and agent, one database, no gateway_url
            shard_relay, agent = relay(db, f"shard-{shard}")
            config = discord_config(
                fake, gateway_url=None, shard_count=2, shard_ids=(shard,), sync_commands=shard == 0
            )
            bridges.append(DiscordBridge(config, shard_relay))
            agents.append(agent)
        try:
            for bridge in bridges:
                await bridge.start()
            assert sorted(fake.identified_shards) == [(0, 2), (1, 2)]
            assert fake.count("GET /gateway/bot") == 2  # each found the gateway the way Discord says

            for shard, channel in enumerate(channels):
                await fake.user_says(channel, alice, f"<@{fake.bot.id}> hello {shard}")
            await fake.user_says(dm, alice, "hi in private")

            await fake.wait_for_texts(channels[0], ["shard-0: hello 0 (#1)"])
            await fake.wait_for_texts(channels[1], ["shard-1: hello 1 (#1)"])
            await fake.wait_for_texts(dm, ["shard-0: hi in private (#1)"])  # DMs arrive on shard 0
            assert sorted(turn.text for turn in agents[0].turns) == ["hello 0", "hi in private"]
            assert [turn.text for turn in agents[1].turns] == ["hello 1"]
        finally:
            for bridge in bridges:
                await bridge.close(grace=1.0)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"shard_ids": (0,)}, "shard_ids needs shard_count"),
        ({"shard_count": 2, "shard_ids": (2,)}, "must lie in 0..1"),
        ({"shard_count": 2, "shard_ids": (1, 1)}, "lists a shard twice"),
    ],
)
def test_shard_settings_are_checked(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DiscordConfig.model_validate({"token": "t", **settings})


def webhook_config(fake: FakeTelegram, base_url: str, port: int) -> TelegramConfig:
    return TelegramConfig(
        token=SecretStr(fake.token),
        base_url=base_url,
        webhook_url=f"http://127.0.0.1:{port}/telegram/updates",
        webhook_listen=f"127.0.0.1:{port}",
        webhook_secret=SecretStr(SECRET),
        edit_interval=0.05,
    )


@pytest.mark.e2e
@pytest.mark.slow
async def test_webhook_mode_answers_posted_updates_and_refuses_forged_ones(
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake = FakeTelegram()
    alice = fake.user("Alice")
    chat = fake.private_chat(alice)
    async with fake.running() as base_url, aiohttp.ClientSession() as client:
        config = webhook_config(fake, base_url, free_port())
        webhook_relay, agent = relay(db, "hook")
        bridge = TelegramBridge(config, webhook_relay)
        await bridge.start()
        try:
            assert fake.webhook == Webhook(str(config.webhook_url), SECRET, list(ALLOWED_UPDATES))
            forged = {
                "update_id": 10_000,
                "message": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "chat": chat.to_json(),
                    "from": alice.to_json(),
                    "text": "forged",
                },
            }
            for headers in ({SECRET_HEADER: "wrong"}, {}):
                async with client.post(str(config.webhook_url), json=forged, headers=headers) as response:
                    assert response.status == 403

            fake.say(chat, alice, "hello")
            await fake.wait_for(lambda: bool(fake.bot_messages(chat)), what="a reply")
            assert [m.text for m in fake.bot_messages(chat)] == ["hook: hello (#1)"]
            assert [turn.text for turn in agent.turns] == ["hello"]
            assert fake.deliveries[-1][1] == 200
            assert fake.count("getUpdates") == 0
        finally:
            await bridge.close(grace=1.0)

        with pytest.raises(aiohttp.ClientConnectionError):  # the webhook server is down...
            await client.post(str(config.webhook_url), json=forged, headers={SECRET_HEADER: SECRET})
        assert fake.webhook is not None  # ...but stays registered, so Telegram holds updates meanwhile
        fake.say(chat, alice, "anyone there?")
        await fake.wait_for(lambda: fake.deliveries[-1][1] == 0, what="a failed delivery")

        polling_relay = relay(db, "poll")[0]  # the next start polls, and takes the update held meanwhile
        polling = TelegramBridge(
            TelegramConfig(
                token=SecretStr(fake.token), base_url=base_url, poll_timeout=1, edit_interval=0.05
            ),
            polling_relay,
        )
        await polling.start()
        try:
            assert fake.webhook is None
            await fake.wait_for(lambda: len(fake.bot_messages(chat)) == 2, what="the held update answered")
            assert fake.bot_messages(chat)[-1].text == "poll: anyone there? (#2)"
        finally:
            await polling.close(grace=1.0)


@pytest.mark.e2e
async def test_webhook_start_fails_cleanly_when_the_port_is_taken(
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake = FakeTelegram()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        async with fake.running() as base_url:
            config = webhook_config(fake, base_url, taken.getsockname()[1])
            bridge = TelegramBridge(config, relay(db, "hook")[0])
            with pytest.raises(BridgeStartError, match="could not start webhook") as failure:
                await bridge.start()
            assert SECRET not in str(failure.value)
            assert not bridge.app.running


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"webhook_url": "https://bot.example.com/hook"}, "needs webhook_secret"),
        ({"webhook_url": "bot.example.com/hook", "webhook_secret": SECRET}, "absolute URL"),
        ({"webhook_listen": "8443"}, "host:port"),
        ({"webhook_listen": "0.0.0.0:70000"}, "host:port"),
        ({"webhook_url": "https://bot.example.com/hook", "webhook_secret": "has spaces"}, "1-256 characters"),
    ],
)
def test_webhook_settings_are_checked(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TelegramConfig.model_validate({"token": "1:t", **settings})
