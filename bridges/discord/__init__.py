"""The Discord bridge: a discord.py cog that streams agent replies (see `DiscordBridge`)."""

from bridges.discord.bridge import DiscordBridge, DiscordStartError
from bridges.discord.config import DiscordConfig

__all__ = ["DiscordBridge", "DiscordConfig", "DiscordStartError"]
