"""What the users' slash commands say about themselves, in each user's client language: Discord shows a
command's `description_localizations` to clients set to that locale, so the descriptions come from the
catalogue through discord.py's `Translator` when the commands are synced."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bridges.catalogue import SOURCE_LOCALE, Catalogue, Strings, english


class CommandWords(Strings, key="discord.command_menu"):
    """The users' commands and their options (at most 100 characters each, as Discord allows)."""

    ask = "Ask the assistant something"
    ask_question = "Your question"
    reset = "Start a new conversation with the assistant"
    human = "Ask for a human moderator"
    stop = "Stop the reply being written for you"
    usage = "How much of the assistant you have used"
    usage_member = "Admins: someone else's usage in this server"


_NAMES = {text: name for name, text in english(CommandWords).items()}
"""Which attribute each English description is, so the translator knows what it is asked for."""


class CatalogueTranslator(app_commands.Translator):
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: Any
    ) -> str | None:
        """The description in `locale` if we have strings for it; None leaves Discord the English."""
        name = _NAMES.get(string.message)
        words = self.catalogue.words(locale.value)
        if name is None or words.locale == SOURCE_LOCALE:
            return None
        text: str = getattr(words(CommandWords), name)
        return text if text != string.message else None
