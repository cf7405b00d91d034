"""Inline keyboards: agent buttons, and the moderator desk's Claim / Resolve / Return buttons.

callback_data holds at most 64 bytes. Agent buttons carry only "sb:" and the button's token; the payload
itself lives in the `ButtonStore` (the database in production), so a press still resolves after a restart
and a forged token resolves to nothing. Desk buttons carry their action and the handoff id
("hd:claim:42"): everything else about the handoff is in the database, so they too survive a restart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from agents.base import Button
from bridges.buttons import ButtonStore
from bridges.controls import control_data
from models import HandoffStatus

PREFIX = "sb:"
MAX_LABEL = 64


async def keyboard(buttons: Sequence[Button], store: ButtonStore) -> InlineKeyboardMarkup | None:
    """One button per row: agent choices are sentences as often as single words."""
    if not buttons:
        return None
    rows = []
    for button in buttons:
        label = button.label.strip()[:MAX_LABEL] or "…"
        control = control_data(button)
        if button.url:
            rows.append([InlineKeyboardButton(label, url=button.url)])
        elif control is not None:  # Stop or Regenerate: no payload to store
            rows.append([InlineKeyboardButton(label, callback_data=control)])
        else:
            rows.append([InlineKeyboardButton(label, callback_data=PREFIX + await store.put(button))])
    return InlineKeyboardMarkup(rows)


def token_of(callback_data: str | None) -> str | None:
    """The store token in a press of one of our buttons, or None for anything else."""
    if callback_data and callback_data.startswith(PREFIX):
        return callback_data[len(PREFIX) :]
    return None


class DeskAction(StrEnum):
    CLAIM = "claim"
    RESOLVE = "resolve"
    RETURN = "return"


DESK_PRESS = re.compile(rf"^hd:({'|'.join(DeskAction)}):(\d{{1,18}})$")
"""What a desk button sends; a `CallbackQueryHandler` pattern, and the parser in `desk_press`."""

_DESK_LABELS = {
    DeskAction.CLAIM: "🙋 Claim",
    DeskAction.RESOLVE: "✅ Resolve",
    DeskAction.RETURN: "↩️ Return to bot",
}
_DESK_ACTIONS = {
    HandoffStatus.REQUESTED: (DeskAction.CLAIM, DeskAction.RESOLVE, DeskAction.RETURN),
    HandoffStatus.CLAIMED: (DeskAction.RESOLVE, DeskAction.RETURN),
}


def desk_keyboard(handoff_id: int, status: HandoffStatus) -> InlineKeyboardMarkup | None:
    """The buttons that still make sense in `status`; none once the handoff is closed."""
    actions = _DESK_ACTIONS.get(status, ())
    if not actions:
        return None
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_DESK_LABELS[action], callback_data=f"hd:{action}:{handoff_id}")
                for action in actions
            ]
        ]
    )


def desk_press(callback_data: str | None) -> tuple[DeskAction, int] | None:
    """The action and handoff id of a desk button press, or None for anything else."""
    match = DESK_PRESS.match(callback_data or "")
    if match is None:
        return None
    return DeskAction(match.group(1)), int(match.group(2))
