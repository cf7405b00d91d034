"""Agent buttons as inline keyboards, and presses back to the exact `Button`.

callback_data holds at most 64 bytes, so it carries only "sb:" and the button's token; the payload itself
lives in the `ButtonStore` (the database in production), so a press still resolves after a restart and a
forged token resolves to nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from agents.base import Button
from bridges.buttons import ButtonStore

PREFIX = "sb:"
MAX_LABEL = 64


async def keyboard(buttons: Sequence[Button], store: ButtonStore) -> InlineKeyboardMarkup | None:
    """One button per row: agent choices are sentences as often as single words."""
    if not buttons:
        return None
    rows = []
    for button in buttons:
        label = button.label.strip()[:MAX_LABEL] or "…"
        if button.url:
            rows.append([InlineKeyboardButton(label, url=button.url)])
        else:
            rows.append([InlineKeyboardButton(label, callback_data=PREFIX + await store.put(button))])
    return InlineKeyboardMarkup(rows)


def token_of(callback_data: str | None) -> str | None:
    """The store token in a press of one of our buttons, or None for anything else."""
    if callback_data and callback_data.startswith(PREFIX):
        return callback_data[len(PREFIX) :]
    return None
