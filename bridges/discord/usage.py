"""`/usage` on Discord: what a member has used of the assistant in this server against the quotas,
and, for members with Manage Server here, what another member has used in this server.

Answered privately. The member's own usage is asked through admission like a message (not for a
blocked user, within the message rate); someone else's only by an admin of this server (authority is
where the command is used, as for `/agent`).
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bridges.discord.cog import CHANNEL_SCOPE, PLATFORM, SERVER_SCOPE
from bridges.discord.command_words import CommandWords
from bridges.notices import Notices
from bridges.outage import DatabaseUnavailable
from bridges.quotas import Keys, QuotaNotices
from bridges.relay import Relay
from bridges.surface import Inbound


class UsageCommand(commands.Cog, name="Usage"):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    @app_commands.command(name="usage", description=CommandWords.usage)
    @app_commands.describe(member=CommandWords.usage_member)
    async def usage(self, interaction: discord.Interaction[Any], member: discord.User | None = None) -> None:
        user = interaction.user
        own = member is None or member.id == user.id
        words = self.relay.catalogue.words(interaction.locale.value)
        say = words(QuotaNotices)
        if not own and (interaction.guild_id is None or not interaction.permissions.manage_guild):
            await interaction.response.send_message(say.not_admin, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # the database may be slow
        asking = Inbound(
            PLATFORM,
            str(interaction.channel_id),
            str(user.id),
            user.display_name,
            "/usage",
            locale=interaction.locale.value,
        )
        refusal = await self.relay.admission(asking)
        whose = member or user
        place = (
            (SERVER_SCOPE, str(interaction.guild_id))
            if interaction.guild_id is not None
            else (CHANNEL_SCOPE, str(interaction.channel_id))
        )
        keys = Keys.at(PLATFORM, str(whose.id), [place])
        label = say.report_you if own else whose.display_name
        if refusal is not None:
            reply = refusal.notice or say.not_here
        else:
            try:
                reply = await self.relay.quotas.report(keys, say, user_label=label)
            except DatabaseUnavailable:
                reply = words(Notices).db_unavailable
        await interaction.edit_original_response(
            content=reply, allowed_mentions=discord.AllowedMentions.none()
        )
