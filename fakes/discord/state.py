"""What the fake Discord remembers (users, guilds, channels, messages, interactions) and how each is
rendered as the JSON the real API sends."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
FORUM = 15
"""A forum channel's type: nothing is posted in it directly; each post is a thread with a starter message."""
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 16) | (1 << 31)  # view, send, read history, slash
ALL_PERMISSIONS = (1 << 50) - 1
MESSAGE_CONTENT_INTENT = 1 << 15

JSON = dict[str, Any]
_counter = itertools.count(1)


def snowflake() -> int:
    """A unique id shaped like Discord's: milliseconds since the Discord epoch, then a counter."""
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeUser:
    id: int
    username: str
    bot: bool = False
    dms_open: bool = True
    """False: the user does not allow direct messages from server members, so Discord refuses the bot's
    messages in their DM with 50007 "Cannot send messages to this user"."""
    locale: str = "en-US"
    """The user's client language: sent with each of their interactions (`Interaction.locale`)."""

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, tuple[str, int]] = field(default_factory=dict)
    """role id -> (name, permission bits); the @everyone role has the guild's id."""
    members: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """user id -> role ids."""
    preferred_locale: str = "en-US"
    """The community's language (`Guild.preferred_locale`), also each interaction's `guild_locale`."""

    def permissions_of(self, user_id: int) -> int:
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        bits = self.roles[self.id][1]
        for role in self.members.get(user_id, ()):
            bits |= self.roles[role][1]
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def member_payload(self, user: FakeUser, *, with_permissions: bool = False) -> JSON:
        member: JSON = {
            "user": user.payload(),
            "roles": [str(role) for role in self.members.get(user.id, ())],
            "joined_at": iso_now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
        }
        if with_permissions:
            member["permissions"] = str(self.permissions_of(user.id))
        return member

    def roles_payload(self) -> list[JSON]:
        return [
            {
                "id": str(role_id),
                "name": name,
                "permissions": str(bits),
                "position": 0 if role_id == self.id else 1,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
            for role_id, (name, bits) in self.roles.items()
        ]


@dataclass
class FakeChannel:
    id: int
    type: int  # 0 guild text, 1 DM, 11 public thread, 15 forum (its posts are threads)
    name: str = ""
    guild_id: int | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    recipient: FakeUser | None = None

    def payload(self) -> JSON:
        data: JSON = {"id": str(self.id), "type": self.type, "last_message_id": None, "flags": 0}
        if self.type == 1:
            assert self.recipient is not None
            return {**data, "recipients": [self.recipient.payload()]}
        data.update(
            guild_id=str(self.guild_id),
            name=self.name,
            position=0,
            permission_overwrites=[],
            nsfw=False,
            rate_limit_per_user=0,
            parent_id=str(self.parent_id) if self.parent_id else None,
        )
        if self.type == FORUM:
            data.update(
                topic=None,
                available_tags=[],
                default_reaction_emoji=None,
                default_sort_order=None,
                default_forum_layout=0,
                default_thread_rate_limit_per_user=0,
            )
        if self.type == 11:
            data.update(
                applied_tags=[],
                owner_id=str(self.owner_id),
                message_count=0,
                member_count=1,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_now(),
                    "locked": False,
                },
            )
        return data


CDN_BASE = "https://cdn.discordapp.com"
"""Where attachment links point until the fake serves them itself (`FakeDiscord.cdn_url`)."""


@dataclass(frozen=True)
class FakeAttachment:
    """A file uploaded with a message (multipart `files[n]`), or sent by a user (`user_says(files=)`).
    A voice message has `duration` (and a waveform, as Discord sends it)."""

    id: int
    filename: str
    data: bytes
    content_type: str | None = None
    duration: float | None = None

    def payload(self, base_url: str) -> JSON:
        content_type = self.content_type
        if content_type is None and self.filename.endswith(".txt"):
            content_type = "text/plain; charset=utf-8"
        data: JSON = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": f"{base_url}/attachments/{self.id}/{self.filename}",
            "proxy_url": f"{base_url}/attachments/{self.id}/{self.filename}",
            "content_type": content_type,
        }
        if self.duration is not None:
            data["duration_secs"] = self.duration
            data["waveform"] = "AAAA"
        return data

    @property
    def text(self) -> str:
        return self.data.decode()


@dataclass
class FakeMessage:
    id: int
    channel_id: int
    author: FakeUser
    content: str
    guild_id: int | None = None
    versions: list[str] = field(default_factory=list)
    """Every content the message has shown, oldest first (the current one last)."""
    components: list[JSON] = field(default_factory=list)
    embeds: list[JSON] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: list[JSON | None] = field(default_factory=list)
    """The `allowed_mentions` of every request that created or edited this message."""
    pinged: set[str] = field(default_factory=set)
    """Who this message would have notified ("everyone", "user:ID", "role:ID") under those settings."""
    mentions: list[FakeUser] = field(default_factory=list)
    reference: FakeMessage | None = None
    webhook_id: int | None = None
    interaction_id: int | None = None

    def payload(
        self, *, content_visible: bool = True, guild: FakeGuild | None = None, cdn: str = CDN_BASE
    ) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content if content_visible else "",
            "timestamp": iso_now(),
            "edited_timestamp": iso_now() if len(self.versions) > 1 else None,
            "tts": False,
            "mention_everyone": "everyone" in self.pinged,
            "mentions": [user.payload() for user in self.mentions],
            "mention_roles": [],
            "attachments": [a.payload(cdn) for a in self.attachments],
            "embeds": self.embeds if content_visible else [],
            "components": self.components if content_visible else [],
            "pinned": False,
            "type": 19 if self.reference else 0,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
            if guild is not None and self.author.id in guild.members:
                member = guild.member_payload(self.author)
                del member["user"]
                data["member"] = member
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        if self.reference is not None:
            data["message_reference"] = {
                "message_id": str(self.reference.id),
                "channel_id": str(self.reference.channel_id),
                **({"guild_id": str(self.guild_id)} if self.guild_id else {}),
            }
            data["referenced_message"] = self.reference.payload(guild=guild)
        return data

    def buttons(self) -> list[JSON]:
        return [item for row in self.components for item in row.get("components", [])]


@dataclass
class FakeInteraction:
    id: int
    token: str
    type: int  # 2 slash command, 3 component, 4 autocomplete, 5 modal submit
    channel_id: int
    user: FakeUser
    guild_id: int | None
    callbacks: list[JSON] = field(default_factory=list)
    original_message_id: int | None = None
    modal: JSON | None = None
    """The modal the bot answered with (callback type 9), which `FakeDiscord.submit` fills in."""


@dataclass(frozen=True)
class RequestRecord:
    method: str
    route: str
    """The route template, e.g. POST /channels/{channel_id}/messages."""
    major: str
    status: int
    at: float
    body: JSON | None


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def pings(content: str, allowed: JSON | None) -> set[str]:
    """Whom `content` notifies: Discord parses every mention kind when `allowed_mentions` is absent."""
    parse = {"everyone", "users", "roles"} if allowed is None else set(allowed.get("parse", []))
    users = {str(u) for u in (allowed or {}).get("users", [])}
    roles = {str(r) for r in (allowed or {}).get("roles", [])}
    found: set[str] = set()
    if "everyone" in parse and ("@everyone" in content or "@here" in content):
        found.add("everyone")
    for user_id in _USER_MENTION.findall(content):
        if "users" in parse or user_id in users:
            found.add(f"user:{user_id}")
    for role_id in _ROLE_MENTION.findall(content):
        if "roles" in parse or role_id in roles:
            found.add(f"role:{role_id}")
    return found
