"""Agent buttons and handoff desk buttons as Discord buttons whose presses survive a restart.

Each choice button's custom_id is "sb:" plus the 16-character token of `bridges.buttons`, so it fits
Discord's 100-character limit whatever the payload, and the payload itself lives in the button store.
A desk button's custom_id is "sbh:<action>:<handoff id>", so it needs no store at all.
The buttons are `DynamicItem`s: discord.py matches any press of a "sb:..." or "sbh:..." custom_id
against the template, so no view has to be re-registered after a restart and nothing is kept per message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Literal, cast, get_args

import discord

from agents.base import Button
from bridges.buttons import TOKEN_LENGTH, ButtonStore
from bridges.controls import CONTROL_DATA, control_data, parse_control

log = logging.getLogger(__name__)

CUSTOM_ID_PREFIX = "sb:"
PRESS_EVENT = "switchboard_press"
"""Dispatched on the bot as (interaction, token); the cog listens with `on_switchboard_press`."""
MAX_BUTTONS = 25  # 5 action rows of 5 buttons
MAX_LABEL = 80


class ChoiceButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.escape(CUSTOM_ID_PREFIX) + rf"(?P<token>[A-Za-z0-9_-]{{{TOKEN_LENGTH}}})",
):
    def __init__(self, token: str, label: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=label, custom_id=CUSTOM_ID_PREFIX + token, style=discord.ButtonStyle.secondary
            )
        )
        self.token = token

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ChoiceButton:
        return cls(match["token"], getattr(item, "label", None) or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch(PRESS_EVENT, interaction, self.token)


CONTROL_EVENT = "switchboard_control"
"""Dispatched on the bot as (interaction, control, owner id); the cog listens with
`on_switchboard_control`."""


class ControlButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=CONTROL_DATA.pattern.strip("^$"),
):
    """Stop or Regenerate on a reply (bridges/controls.py): its custom_id names the action and the user."""

    def __init__(self, custom_id: str, label: str) -> None:
        super().__init__(
            discord.ui.Button(label=label, custom_id=custom_id, style=discord.ButtonStyle.secondary)
        )
        self.custom_id = custom_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ControlButton:
        return cls(match.string, getattr(item, "label", None) or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        parsed = parse_control(self.custom_id)
        assert parsed is not None  # the template is the parser's pattern
        interaction.client.dispatch(CONTROL_EVENT, interaction, *parsed)


HandoffAction = Literal["claim", "resolve", "return"]
HANDOFF_PREFIX = "sbh:"
HANDOFF_EVENT = "switchboard_handoff"
"""Dispatched on the bot as (interaction, action, handoff id); the desk listens with
`on_switchboard_handoff`."""
_HANDOFF_STYLES: dict[HandoffAction, tuple[str, discord.ButtonStyle]] = {
    "claim": ("Claim", discord.ButtonStyle.primary),
    "resolve": ("Resolve", discord.ButtonStyle.success),
    "return": ("Return to bot", discord.ButtonStyle.secondary),
}


class HandoffButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.escape(HANDOFF_PREFIX)
    + rf"(?P<action>{'|'.join(get_args(HandoffAction))}):(?P<handoff_id>[0-9]{{1,20}})",
):
    """A moderator desk button; at most 4 + 7 + 1 + 20 = 32 characters of custom_id."""

    def __init__(self, action: HandoffAction, handoff_id: int) -> None:
        label, style = _HANDOFF_STYLES[action]
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=f"{HANDOFF_PREFIX}{action}:{handoff_id}")
        )
        self.action: HandoffAction = action
        self.handoff_id = handoff_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> HandoffButton:
        return cls(cast(HandoffAction, match["action"]), int(match["handoff_id"]))  # the template's choice

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch(HANDOFF_EVENT, interaction, self.action, self.handoff_id)


class ButtonViews:
    """Builds the view for a message's buttons, storing each choice's payload under its token."""

    def __init__(self, store: ButtonStore) -> None:
        self.store = store

    async def build(self, buttons: Sequence[Button]) -> discord.ui.View | None:
        if not buttons:
            return None
        if len(buttons) > MAX_BUTTONS:
            log.warning("an agent offered %d buttons; Discord shows at most %d", len(buttons), MAX_BUTTONS)
        view = discord.ui.View(timeout=None)  # fills rows of five, in order
        for button in buttons[:MAX_BUTTONS]:
            label = _label(button.label)
            control = control_data(button)
            if button.url and button.url.startswith(("https://", "http://")):
                view.add_item(discord.ui.Button(label=label, url=button.url))
            elif control is not None:
                view.add_item(ControlButton(control, label))
            else:
                view.add_item(ChoiceButton(await self.store.put(button), label))
        return view

    async def resolve(self, token: str) -> Button | None:
        return await self.store.get(token)


def _label(label: str) -> str:
    """Discord requires 1-80 characters."""
    label = " ".join(label.split()) or "•"
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"
