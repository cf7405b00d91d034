"""Rating presses on Discord: the stars, answered only to the presser, then a modal for the comment.

A modal can only be the response to the press itself, so the press is answered with it at once and the
question's message is edited to show the result. The modal is stopped before it is sent, so discord.py
keeps nothing of it: its submit is matched here by custom_id ("sbr:<case>"), the same before and after a
restart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import discord

from bridges.discord.surface import Surfaces
from bridges.ratings import COMMENT_LIMIT, RatingNotices, RatingPress, Ratings, Verdict
from bridges.surface import SurfaceError

log = logging.getLogger(__name__)

PLATFORM = "discord"
MODAL = re.compile(r"sbr:([0-9]{1,20})")
COMMENT_FIELD = "comment"
TEXT_INPUT = 4


class DiscordRatings:
    def __init__(self, ratings: Ratings, surfaces: Surfaces) -> None:
        self.ratings = ratings
        self.surfaces = surfaces

    def _words(self, interaction: discord.Interaction[Any]) -> RatingNotices:
        """What the user who pressed or submitted is told, in their client's language."""
        return self.ratings.handoffs.catalogue.words(interaction.locale.value)(RatingNotices)

    async def pressed(self, interaction: discord.Interaction[Any], press: RatingPress) -> None:
        say = self._words(interaction)
        rated = await self.ratings.rate(press, PLATFORM, str(interaction.user.id), say)
        if rated.verdict is not Verdict.RATED:
            await interaction.response.send_message(rated.answer, ephemeral=True)
            return
        if self.ratings.settings.comments:
            await interaction.response.send_modal(comment_modal(press.handoff_id, say))
        else:
            await interaction.response.defer()  # the press is taken; the message shows the result
        if interaction.message is not None and interaction.channel_id is not None:
            surface = self.surfaces.channel(interaction.channel_id)
            try:  # without buttons: the result replaces them
                await surface.edit(str(interaction.message.id), rated.answer)
            except SurfaceError as exc:
                log.warning("discord: could not show a rating's result: %s", exc)

    async def submitted(self, interaction: discord.Interaction[Any]) -> None:
        """A modal's submit: the comment, if it is ours (any other modal is left to its own handler)."""
        data: dict[str, Any] = dict(interaction.data or {})
        match = MODAL.fullmatch(str(data.get("custom_id", "")))
        if match is None:
            return
        text = next(
            (str(c.get("value") or "") for c in _inputs(data) if c.get("custom_id") == COMMENT_FIELD), ""
        )
        user_id = str(interaction.user.id)
        answer = await self.ratings.comment(int(match[1]), PLATFORM, user_id, text, self._words(interaction))
        await interaction.response.send_message(answer, ephemeral=True)


def comment_modal(handoff_id: int, say: RatingNotices) -> discord.ui.Modal:
    modal = discord.ui.Modal(title=say.comment_title[:45], custom_id=f"sbr:{handoff_id}", timeout=None)
    modal.add_item(
        discord.ui.TextInput(
            label=say.comment_label[:45],
            custom_id=COMMENT_FIELD,
            style=discord.TextStyle.paragraph,
            max_length=COMMENT_LIMIT,
        )
    )
    modal.stop()  # finished: discord.py stores no copy, so `submitted` takes every submit
    return modal


def _inputs(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every text input in a modal's submit, in action rows or labels, as Discord nests them."""
    stack = list(data.get("components") or [])
    while stack:
        component = stack.pop(0)
        if component.get("type") == TEXT_INPUT:
            yield component
        stack.extend(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            stack.append(component["component"])
