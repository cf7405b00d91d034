"""Telegram: private chats, groups and forum topics served through the Relay with python-telegram-bot."""

from bridges.telegram.bridge import TelegramBridge, TelegramStartError
from bridges.telegram.config import TelegramConfig

__all__ = ["TelegramBridge", "TelegramConfig", "TelegramStartError"]
