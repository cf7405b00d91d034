"""Telegram: private chats, groups and forum topics with python-telegram-bot (see bridge.TelegramBridge).

Imported lazily through bridges/registry.py; importing this package pulls in nothing else.
"""
