"""A wire-level fake Telegram Bot API for the real python-telegram-bot client; see `FakeTelegram`."""

from fakes.telegram.limits import Limit, Limits, Window
from fakes.telegram.server import FakeTelegram
from fakes.telegram.state import (
    FakeChat,
    FakeDocument,
    FakeDraft,
    FakeMessage,
    FakeUser,
    RequestRecord,
)

__all__ = [
    "FakeChat",
    "FakeDocument",
    "FakeDraft",
    "FakeMessage",
    "FakeTelegram",
    "FakeUser",
    "Limit",
    "Limits",
    "RequestRecord",
    "Window",
]
