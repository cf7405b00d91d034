"""The bridge's configuration for a fake Discord, shared by every test that starts a real DiscordBridge."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from bridges.discord.config import DiscordConfig
from fakes.discord import FakeDiscord


def discord_config(fake: FakeDiscord, **overrides: Any) -> DiscordConfig:
    """Point the bridge at `fake`, give it the fake's message window (as an operator would Discord's),
    and shorten the start-up wait and edit pacing so tests stay quick; `overrides` win."""
    values: dict[str, Any] = {
        "token": SecretStr(fake.token),
        "api_base": fake.api_base,
        "gateway_url": fake.gateway_url,
        "channel_window_seconds": fake.message_window,
        "guild_ready_timeout": 0.05,
        "edit_interval": 0.02,
    }
    return DiscordConfig(**(values | overrides))
