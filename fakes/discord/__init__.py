"""A wire-level fake Discord (REST + gateway) for the real discord.py client; see `FakeDiscord`."""

from fakes.discord.server import FakeDiscord
from fakes.discord.state import (
    MANAGE_GUILD,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeUser,
    RequestRecord,
)

__all__ = [
    "MANAGE_GUILD",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "FakeUser",
    "RequestRecord",
]
