"""A fake Discord on loopback for the real discord.py client: REST, gateway, interactions, rate limits.

Tests drive it like a user would (a message, a slash command, a button press) and inspect what the bot
did: every message with its edit history, the `allowed_mentions` of every request, and every 429.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import BodyPartReader, WSMsgType, web

from fakes.discord.ratelimit import RateLimiter
from fakes.discord.state import (
    FORUM,
    JSON,
    MEMBER_PERMISSIONS,
    MESSAGE_CONTENT_INTENT,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeUser,
    RequestRecord,
    iso_now,
    pings,
    snowflake,
)
from fakes.server import serve

LOCALES = frozenset(
    "id da de en-GB en-US es-ES es-419 fr hr it lt hu nl no pl pt-BR ro fi sv-SE vi tr cs el bg ru uk hi th "
    "zh-CN ja zh-TW ko".split()
)
"""The locales Discord accepts in `*_localizations` (its developer documentation's Locales table)."""

T = TypeVar("T")
Handler = Callable[[web.Request, JSON], Awaitable[tuple[int, Any]]]

MAX_CONTENT = 2000
UPLOADS = web.RequestKey("uploads", dict[int, tuple[str, bytes]])
"""A multipart request's `files[n]` parts: n -> (filename, bytes)."""
MAX_EMBEDS = 10
EMBED_LIMITS = {"title": 256, "description": 4096, "footer": 2048, "author": 256}
MAX_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_EMBED_TOTAL = 6000
MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_CUSTOM_ID = 100
MAX_LABEL = 80
EPHEMERAL = 1 << 6
LOADING = 1 << 7
MAX_CHOICES = 25
MAX_MODAL_TITLE = 45
MAX_INPUT_LABEL = 45
MAX_INPUT_LENGTH = 4000
MAX_CHOICE = 100
GUILD_MEMBERS_INTENT = 1 << 1
Option = str | int | bool | FakeUser
"""A slash command option's value, as a test gives it."""


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """Discord's formula for the shard that receives a guild's events; DMs go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


@dataclass
class _Session:
    ws: web.WebSocketResponse
    intents: int = 0
    seq: int = 0
    identified: bool = False
    shard: tuple[int, int] = (0, 1)
    """[shard_id, num_shards] from IDENTIFY; an unsharded connection is shard 0 of 1."""

    def receives(self, guild_id: int | None) -> bool:
        return shard_of(guild_id, self.shard[1]) == self.shard[0]


@dataclass
class _RouteSpec:
    """How one REST route is guarded: bot auth, which path parameter is its major one, global limit."""

    method: str
    path: str
    handler: Handler
    major: tuple[str, ...] = ()
    auth: bool = True
    counts_globally: bool = True


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class FakeDiscord:
    """One bot's view of Discord. Use as `async with FakeDiscord() as fake:`; set up users, guilds and
    channels before the client connects (they are sent in READY / GUILD_CREATE)."""

    token: str = "fake-bot-token"
    message_limit: int = 5
    """Discord's per-channel message bucket: this many requests per `message_window` seconds."""
    message_window: float = 5.0
    global_limit: int = 50
    global_window: float = 1.0
    bot: FakeUser = field(default_factory=lambda: FakeUser(snowflake(), "Switchboard", bot=True))
    users: dict[int, FakeUser] = field(default_factory=dict)
    guilds: dict[int, FakeGuild] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    interactions: dict[int, FakeInteraction] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    commands: dict[str, list[JSON]] = field(default_factory=dict)
    """Registered application commands by scope ("global" or a guild id)."""
    typing: dict[int, int] = field(default_factory=dict)
    identifies: list[int] = field(default_factory=list)
    """The intents of every IDENTIFY received."""
    shards: int = 1
    """The shard count GET /gateway/bot recommends."""
    identified_shards: list[tuple[int, int]] = field(default_factory=list)
    """The [shard_id, num_shards] of every successful IDENTIFY ((0, 1) when it named none)."""
    upload_limit: int = 10 * 1024 * 1024
    """Bytes of files one message may carry (a server without boosts); more is a 413."""
    cdn_gone: set[int] = field(default_factory=set)
    """Attachments the CDN answers 404 for (a file Discord will not serve)."""
    cdn_requests: list[int] = field(default_factory=list)
    """The attachment id of every CDN download, in order."""
    refusing: dict[int, DiscordError] = field(default_factory=dict)
    """Channels whose new messages are answered with this error (as a DM with a user who blocked the
    bot is), until removed; see `refuse`."""

    def __post_init__(self) -> None:
        per_channel = (self.message_limit, self.message_window)
        self.limits = RateLimiter(
            {
                "POST /channels/{channel_id}/messages": per_channel,
                "PATCH /channels/{channel_id}/messages/{message_id}": per_channel,
                "POST /channels/{channel_id}/typing": per_channel,
                "POST /channels/{channel_id}/messages/{message_id}/threads": per_channel,
                "POST /webhooks/{application_id}/{token}": per_channel,
                "PATCH /webhooks/{application_id}/{token}/messages/{message_id}": per_channel,
            },
            global_limit=self.global_limit,
            global_window=self.global_window,
        )
        self.users[self.bot.id] = self.bot
        self._sessions: list[_Session] = []
        self._waiters: set[asyncio.Event] = set()
        self._stack = AsyncExitStack()
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{attachment_id}/{filename}", self._cdn)
        for spec in self._routes():
            app.router.add_route(spec.method, "/api/v10" + spec.path, self._guarded(spec))
        self.base_url = await self._stack.enter_async_context(serve(app))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for session in list(self._sessions):
            await session.ws.close(code=1001)
        await self._stack.aclose()

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def cdn_url(self) -> str:
        """The loopback CDN that serves attachment links (cdn.discordapp.com's part)."""
        return f"{self.base_url}/cdn"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/gateway"

    @property
    def application_id(self) -> int:
        return self.bot.id

    # -- world set-up ------------------------------------------------------------------------------

    def add_user(self, username: str) -> FakeUser:
        user = FakeUser(snowflake(), username)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, owner: FakeUser, *, guild_id: int | None = None) -> FakeGuild:
        """A guild; pass `guild_id` to choose its shard (see `shard_of`)."""
        guild = FakeGuild(guild_id or snowflake(), name, owner.id)
        guild.roles[guild.id] = ("@everyone", MEMBER_PERMISSIONS)
        guild.members[self.bot.id] = ()
        guild.members[owner.id] = ()
        self.guilds[guild.id] = guild
        return guild

    def add_role(self, guild: FakeGuild, name: str, permissions: int = 0) -> int:
        role_id = snowflake()
        guild.roles[role_id] = (name, permissions)
        return role_id

    def add_member(self, guild: FakeGuild, user: FakeUser, roles: tuple[int, ...] = ()) -> None:
        guild.members[user.id] = roles

    def add_text_channel(self, guild: FakeGuild, name: str) -> FakeChannel:
        channel = FakeChannel(snowflake(), 0, name, guild.id)
        self.channels[channel.id] = channel
        return channel

    def add_forum_channel(self, guild: FakeGuild, name: str) -> FakeChannel:
        """A forum: users start posts in it (`user_posts`), and talk in the posts' threads."""
        channel = FakeChannel(snowflake(), FORUM, name, guild.id)
        self.channels[channel.id] = channel
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient is user:
                return channel
        channel = FakeChannel(snowflake(), 1, recipient=user)
        self.channels[channel.id] = channel
        return channel

    # -- what a user does --------------------------------------------------------------------------

    async def user_says(
        self,
        channel: FakeChannel,
        user: FakeUser,
        content: str,
        *,
        reply_to: FakeMessage | None = None,
        files: Sequence[FakeAttachment] = (),
    ) -> FakeMessage:
        """Post as `user`, with `files` attached (see `attachment`). `<@ID>` in the content mentions that
        user; a reply pings its author, as Discord's client does by default."""
        if sum(len(file.data) for file in files) > self.upload_limit:
            raise DiscordError(413, 40005, "Request entity too large")
        message = FakeMessage(
            snowflake(),
            channel.id,
            user,
            content,
            channel.guild_id,
            [content],
            reference=reply_to,
            attachments=list(files),
        )
        message.mentions = [
            u for u in self.users.values() if f"<@{u.id}>" in content or f"<@!{u.id}>" in content
        ]
        if reply_to is not None and reply_to.author not in message.mentions:
            message.mentions.append(reply_to.author)
        self.messages[message.id] = message
        await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def user_posts(self, forum: FakeChannel, user: FakeUser, title: str, content: str) -> FakeMessage:
        """`user` starts a post in `forum` (POST /channels/{forum}/threads with a message): Discord creates
        a thread owned by them whose starter message has the thread's id, then sends THREAD_CREATE and
        MESSAGE_CREATE for the starter message in the thread."""
        if forum.type != FORUM:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        thread = FakeChannel(snowflake(), 11, title[:100], forum.guild_id, forum.id, user.id)
        self.channels[thread.id] = thread
        await self._dispatch(
            "THREAD_CREATE", thread.guild_id, lambda session: {**thread.payload(), "newly_created": True}
        )
        message = FakeMessage(thread.id, thread.id, user, content, thread.guild_id, [content])
        message.mentions = [u for u in self.users.values() if f"<@{u.id}>" in content]
        self.messages[message.id] = message
        await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def user_edits(self, message: FakeMessage, content: str) -> None:
        """The author edits their message: Discord sends MESSAGE_UPDATE with the whole new message."""
        message.content = content
        message.versions.append(content)
        await self._dispatch_message("MESSAGE_UPDATE", message)

    async def user_deletes(self, message: FakeMessage) -> None:
        """The author deletes their message: Discord sends MESSAGE_DELETE with its ids only."""
        del self.messages[message.id]
        data: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        await self._dispatch("MESSAGE_DELETE", message.guild_id, lambda session: data)

    @staticmethod
    def attachment(
        filename: str, data: bytes, content_type: str | None = None, *, duration: float | None = None
    ) -> FakeAttachment:
        """A file for `user_says`; with `duration`, a voice message."""
        return FakeAttachment(snowflake(), filename, data, content_type, duration)

    async def slash(
        self, channel: FakeChannel, user: FakeUser, name: str, /, *path: str, **options: Option
    ) -> FakeInteraction:
        """Invoke the registered slash command `name` (its subcommand `path`, if it has subcommands) with
        these option values, typed as the command declares them; a `FakeUser` fills a user option."""
        return await self._interact(2, channel, user, self._command_data(channel, name, path, options))

    async def autocomplete(
        self, channel: FakeChannel, user: FakeUser, name: str, /, *path: str, focused: str, **options: Option
    ) -> list[JSON]:
        """Type into the option `focused` of `/name path` (its value in `options` is what was typed so
        far, possibly "") and return the choices the bot offers, as Discord's client shows them."""
        data = self._command_data(channel, name, path, options, focused=focused)
        interaction = await self._interact(4, channel, user, data)
        callback = await self.wait_for_callback(interaction)
        return list(callback["data"]["choices"])

    async def press(self, message: FakeMessage, custom_id: str, user: FakeUser) -> FakeInteraction:
        """Click the button `custom_id` on `message` (it must be there, as in Discord's client)."""
        if not any(b.get("custom_id") == custom_id for b in message.buttons()):
            raise AssertionError(f"message {message.id} has no button {custom_id!r}")
        channel = self.channels[message.channel_id]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, channel, user, data, message)

    async def message_menu(self, message: FakeMessage, user: FakeUser, name: str) -> FakeInteraction:
        """Right-click `message` and pick the registered message command `name` (Apps > name), as
        Discord's client sends it: type 3 data naming the target, the message itself under `resolved`."""
        channel = self.channels[message.channel_id]
        command, scope = self._command(name, channel.guild_id)
        if command.get("type") != 3:
            raise AssertionError(f"{name!r} is not a message command")
        guild = self.guilds.get(channel.guild_id or 0)
        data: JSON = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): message.payload(cdn=self.cdn_url, guild=guild)}},
        }
        if scope != "global":
            data["guild_id"] = scope
        return await self._interact(2, channel, user, data)

    async def submit(self, interaction: FakeInteraction, **values: str) -> FakeInteraction:
        """Fill in and submit the modal the bot answered `interaction` with (as its user, as Discord's
        client lets them: every required field filled, none over its length); returns the submit."""
        modal = interaction.modal
        if modal is None:
            raise AssertionError(f"interaction {interaction.id} was not answered with a modal")
        inputs = {i["custom_id"]: i for i in _modal_inputs(modal)}
        if set(values) - set(inputs):
            raise AssertionError(f"the modal has no fields {sorted(set(values) - set(inputs))}")
        for custom_id, spec in inputs.items():
            value = values.get(custom_id, "")
            if spec.get("required", True) and not value:
                raise AssertionError(f"the modal's field {custom_id!r} is required")
            if (
                not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", MAX_INPUT_LENGTH)
                and value
            ):
                raise AssertionError(f"the modal's field {custom_id!r} is too short or too long")
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": values.get(key, "")}]}
            for key in inputs
        ]
        channel = self.channels[interaction.channel_id]
        return await self._interact(
            5, channel, interaction.user, {"custom_id": modal["custom_id"], "components": rows}
        )

    async def member_leaves(self, guild: FakeGuild, user: FakeUser) -> None:
        """`user` leaves (or is kicked from) `guild`: GUILD_MEMBER_REMOVE, which Discord sends only to
        connections that asked for the privileged Server Members intent."""
        del guild.members[user.id]
        payload = {"guild_id": str(guild.id), "user": user.payload()}
        await self._dispatch("GUILD_MEMBER_REMOVE", guild.id, lambda session: payload, GUILD_MEMBERS_INTENT)

    # -- what a test waits for and inspects --------------------------------------------------------

    async def wait_until(
        self, predicate: Callable[[], T | None], *, within: float = 5.0, what: str = ""
    ) -> T:
        """Wait until `predicate()` is truthy (re-checked on every change here) and return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            result = predicate()
            if result:
                return result
            changed = asyncio.Event()
            self._waiters.add(changed)
            try:
                await asyncio.wait_for(changed.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise AssertionError(f"timed out after {within}s waiting for {what or predicate}") from None
            finally:
                self._waiters.discard(changed)

    async def connected(self, within: float = 5.0) -> None:
        await self.wait_until(
            lambda: any(s.identified for s in self._sessions), within=within, what="IDENTIFY"
        )

    def bot_messages(self, channel: FakeChannel | int) -> list[FakeMessage]:
        """The bot's messages everyone in a channel sees, oldest first: neither a "thinking" placeholder
        nor an ephemeral reply (see `interactions` for those)."""
        channel_id = channel if isinstance(channel, int) else channel.id
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id and m.author is self.bot and m.versions and not m.flags & EPHEMERAL
        ]

    async def wait_for_texts(
        self, channel: FakeChannel | int, texts: list[str], *, within: float = 5.0
    ) -> list[FakeMessage]:
        """Wait until the bot's messages in `channel` show exactly `texts`, in order."""

        def shown() -> list[FakeMessage] | None:
            messages = self.bot_messages(channel)
            return messages if [m.content for m in messages] == texts else None

        try:
            return await self.wait_until(shown, within=within, what=f"texts {texts!r}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; shown: {[m.content for m in self.bot_messages(channel)]!r}"
            ) from None

    @property
    def rate_limited(self) -> int:
        """How many requests were answered with 429."""
        return len(self.limits.refused)

    def count(self, route: str) -> int:
        return sum(1 for r in self.requests if r.route == route)

    # -- CDN ---------------------------------------------------------------------------------------

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        """An attachment's bytes, as cdn.discordapp.com serves them (no bot token); 404 once its message
        is gone or the file is listed in `cdn_gone`."""
        attachment_id = int(request.match_info["attachment_id"])
        self.cdn_requests.append(attachment_id)
        self._changed()
        for message in self.messages.values():
            for item in message.attachments:
                if item.id == attachment_id and item.filename == request.match_info["filename"]:
                    if attachment_id in self.cdn_gone:
                        break
                    headers = {"Content-Type": item.content_type or "application/octet-stream"}
                    return web.Response(body=item.data, headers=headers)
        return web.Response(status=404, text="404: Not Found")

    # -- gateway -----------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = _Session(ws)
        self._sessions.append(session)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                if payload["op"] == 1:
                    await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
                elif payload["op"] == 2:
                    await self._identify(session, payload["d"])
                elif payload["op"] == 6:
                    session.identified = True
                    await self._send(session, "RESUMED", {})
        finally:
            self._sessions.remove(session)
            self._changed()
        return ws

    async def _identify(self, session: _Session, data: JSON) -> None:
        if data.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard_id, shard_count = data.get("shard", (0, 1))
        if not 0 <= shard_id < shard_count:
            await session.ws.close(code=4010, message=b"Invalid shard.")
            return
        session.intents, session.shard = int(data.get("intents", 0)), (shard_id, shard_count)
        self.identifies.append(session.intents)
        self.identified_shards.append(session.shard)
        guilds = [guild for guild in self.guilds.values() if session.receives(guild.id)]
        ready: JSON = {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(guild.id), "unavailable": True} for guild in guilds],
            "session_id": secrets.token_hex(16),
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._send(session, "READY", ready)
        for guild in guilds:
            await self._send(session, "GUILD_CREATE", self._guild_payload(guild))
        session.identified = True
        self._changed()

    async def _send(self, session: _Session, event: str, data: JSON) -> None:
        session.seq += 1
        if not session.ws.closed:
            await session.ws.send_json({"op": 0, "t": event, "s": session.seq, "d": data})

    async def _dispatch(
        self, event: str, guild_id: int | None, build: Callable[[_Session], JSON], intent: int = 0
    ) -> None:
        """Send `event` to every connection of the shard that owns `guild_id` (that asked for `intent`)."""
        for session in list(self._sessions):
            if session.identified and session.receives(guild_id) and session.intents & intent == intent:
                await self._send(session, event, build(session))

    async def _dispatch_message(self, event: str, message: FakeMessage) -> None:
        if message.flags & EPHEMERAL:
            return  # only the user who invoked the interaction sees it; no gateway event
        guild = self.guilds.get(message.guild_id or 0)

        def build(session: _Session) -> JSON:
            return message.payload(
                cdn=self.cdn_url, content_visible=self._content_visible(message, session), guild=guild
            )

        await self._dispatch(event, message.guild_id, build)

    def _content_visible(self, message: FakeMessage, session: _Session) -> bool:
        """Discord sends message content without the privileged intent only for DMs, mentions and the
        bot's own messages."""
        return bool(
            session.intents & MESSAGE_CONTENT_INTENT
            or message.guild_id is None
            or message.author is self.bot
            or self.bot in message.mentions
        )

    def _guild_payload(self, guild: FakeGuild) -> JSON:
        channels = [c for c in self.channels.values() if c.guild_id == guild.id]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(guild.owner_id),
            "roles": guild.roles_payload(),
            "emojis": [],
            "stickers": [],
            "features": [],
            "member_count": len(guild.members),
            "members": [guild.member_payload(self.users[uid]) for uid in guild.members],
            "channels": [c.payload() for c in channels if c.type in (0, FORUM)],
            "threads": [c.payload() for c in channels if c.type == 11],
            "large": False,
            "unavailable": False,
            "joined_at": iso_now(),
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": guild.preferred_locale,
            "system_channel_flags": 0,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    # -- interactions (incoming) -------------------------------------------------------------------

    async def _interact(
        self, kind: int, channel: FakeChannel, user: FakeUser, data: JSON, message: FakeMessage | None = None
    ) -> FakeInteraction:
        interaction = FakeInteraction(
            snowflake(), secrets.token_urlsafe(24), kind, channel.id, user, channel.guild_id
        )
        self.interactions[interaction.id] = interaction
        guild = self.guilds.get(channel.guild_id or 0)
        payload: JSON = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": interaction.token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "data": data,
            "locale": user.locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": str(guild.permissions_of(self.bot.id) if guild else MEMBER_PERMISSIONS),
            "authorizing_integration_owners": {"0": str(guild.id)} if guild else {"1": str(user.id)},
            "context": 0 if guild else 1,
        }
        if guild is not None:
            payload.update(guild_id=str(guild.id), guild_locale=guild.preferred_locale)
            payload["member"] = guild.member_payload(user, with_permissions=True)
        else:
            payload["user"] = user.payload()
        if message is not None:
            payload["message"] = message.payload(cdn=self.cdn_url, guild=guild)
        await self._dispatch("INTERACTION_CREATE", channel.guild_id, lambda session: payload)
        return interaction

    def _command(self, name: str, guild_id: int | None) -> tuple[JSON, str]:
        """The command a user in that guild would see under `name`, and its scope."""
        for scope in (str(guild_id), "global"):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command, scope
        raise AssertionError(f"no application command {name!r} was registered")

    def _command_data(
        self,
        channel: FakeChannel,
        name: str,
        path: Sequence[str],
        options: dict[str, Option],
        *,
        focused: str | None = None,
    ) -> JSON:
        """The interaction data Discord's client sends for `/name path options`, checked against what
        the command declares as the client does: subcommands nested, a value per declared option (a
        choice's value among its choices, a string within its lengths), every required one given (not
        yet while autocompleting), and a user option's member under `resolved`."""
        command, scope = self._command(name, channel.guild_id)
        data: JSON = {"id": command["id"], "name": name, "type": 1}
        level, declared = data, list(command.get("options", []))
        for sub in path:
            spec = next((o for o in declared if o["name"] == sub and o["type"] in (1, 2)), None)
            if spec is None:
                raise AssertionError(f"/{name} has no subcommand {sub!r}")
            child: JSON = {"name": sub, "type": spec["type"]}
            level["options"] = [child]
            level, declared = child, list(spec.get("options", []))
        if any(o["type"] in (1, 2) for o in declared):
            raise AssertionError(f"/{name} {' '.join(path)} needs a subcommand")
        missing = [o["name"] for o in declared if o.get("required") and o["name"] not in options]
        if missing and focused is None:
            raise AssertionError(f"/{name}: required options {missing} not given")
        values: list[JSON] = []
        guild = self.guilds.get(channel.guild_id or 0)
        for key, value in options.items():
            spec = next((o for o in declared if o["name"] == key), None)
            if spec is None:
                raise AssertionError(f"/{name} has no option {key!r}")
            entry: JSON = {"name": key, "type": spec["type"], "value": value}
            if key == focused:
                entry["focused"] = True  # what was typed so far, unchecked
            elif isinstance(value, FakeUser):
                assert spec["type"] == 6, f"option {key!r} takes no user"
                entry["value"] = str(value.id)
                resolved = data.setdefault("resolved", {"users": {}, "members": {}})
                resolved["users"][str(value.id)] = value.payload()
                if guild is not None and value.id in guild.members:
                    member = guild.member_payload(value, with_permissions=True)
                    del member["user"]
                    resolved["members"][str(value.id)] = member
            else:
                _check_value(name, spec, value)
            values.append(entry)
        level["options"] = values
        if scope != "global":  # Discord names the guild only for a command registered in that guild
            data["guild_id"] = scope
        return data

    async def answer(self, interaction: FakeInteraction, *, within: float = 5.0) -> FakeMessage:
        """The message answering `interaction` once it shows something: a deferred ("thinking") one only
        after the bot has edited it. Ephemeral answers are found here too."""

        def shown() -> FakeMessage | None:
            message = self.messages.get(interaction.original_message_id or 0)
            return message if message is not None and message.versions else None

        return await self.wait_until(shown, within=within, what=f"an answer to interaction {interaction.id}")

    async def wait_for_callback(self, interaction: FakeInteraction, *, within: float = 5.0) -> JSON:
        return await self.wait_until(
            lambda: interaction.callbacks[0] if interaction.callbacks else None,
            within=within,
            what=f"a response to interaction {interaction.id}",
        )

    # -- REST --------------------------------------------------------------------------------------

    def _routes(self) -> list[_RouteSpec]:
        webhook = ("application_id", "token")
        return [
            _RouteSpec("GET", "/users/@me", self._get_me),
            _RouteSpec("GET", "/oauth2/applications/@me", self._get_application),
            _RouteSpec("GET", "/gateway", self._get_gateway, auth=False),
            _RouteSpec("GET", "/gateway/bot", self._get_gateway),
            _RouteSpec("PUT", "/applications/{application_id}/commands", self._put_commands),
            _RouteSpec(
                "PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands
            ),
            _RouteSpec("POST", "/users/@me/channels", self._create_dm),
            _RouteSpec("POST", "/channels/{channel_id}/messages", self._post_message, ("channel_id",)),
            _RouteSpec(
                "PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message, ("channel_id",)
            ),
            _RouteSpec("POST", "/channels/{channel_id}/typing", self._post_typing, ("channel_id",)),
            _RouteSpec(
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self._post_thread,
                ("channel_id",),
            ),
            _RouteSpec(
                "POST",
                "/interactions/{interaction_id}/{token}/callback",
                self._post_callback,
                auth=False,
                counts_globally=False,
            ),
            _RouteSpec(
                "POST", "/webhooks/{application_id}/{token}", self._post_followup, webhook, False, False
            ),
            _RouteSpec(
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._patch_followup,
                webhook,
                False,
                False,
            ),
        ]

    def _guarded(self, spec: _RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        route = f"{spec.method} {spec.path}"

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await _read_body(request)
            if spec.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                return self._respond(
                    request, route, "", body, 401, {"message": "401: Unauthorized", "code": 0}
                )
            major = ":".join(request.match_info[key] for key in spec.major)
            verdict = self.limits.check(route, major, counts_globally=spec.counts_globally)
            if verdict.limited:
                return self._respond(request, route, major, body, 429, verdict.body(), verdict.headers)
            try:
                status, data = await spec.handler(request, body)
            except DiscordError as exc:
                status, data = exc.status, {"code": exc.code, "message": exc.message}
            return self._respond(request, route, major, body, status, data, verdict.headers)

        return handle

    def _respond(
        self,
        request: web.Request,
        route: str,
        major: str,
        body: JSON,
        status: int,
        data: Any,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        loop = asyncio.get_running_loop()
        self.requests.append(RequestRecord(request.method, route, major, status, loop.time(), body))
        self._changed()
        # Discord answers through Google's front end; discord.py takes a 429 without `Via` for a
        # Cloudflare ban and gives up instead of retrying.
        headers = {**(headers or {}), "Via": "1.1 google"}
        if status == 204:
            return web.Response(status=204, headers=headers)
        # exactly application/json: with a charset, discord.py treats the body as text
        return web.Response(
            status=status,
            body=json.dumps(data).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )

    async def _get_me(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        return 200, {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0}

    async def _get_application(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        return 200, {
            "id": str(self.application_id),
            "name": self.bot.username,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.bot.payload(),
            "summary": "",
            "verify_key": "0" * 64,
            "team": None,
            "flags": 0,
        }

    async def _get_gateway(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit}

    async def _put_commands(self, request: web.Request, body: Any) -> tuple[int, Any]:
        scope = request.match_info.get("guild_id", "global")
        for command in body:  # Discord refuses an unknown locale or a description over 100 characters
            for described in [command, *command.get("options", ())]:
                localized = described.get("description_localizations") or {}
                if any(
                    locale not in LOCALES or not 1 <= len(text) <= 100 for locale, text in localized.items()
                ):
                    raise DiscordError(400, 50035, "Invalid Form Body")
        registered = [  # Discord answers an empty description for user and message commands
            {"description": "", **command, "id": str(snowflake()), "application_id": str(self.application_id)}
            | {"version": "1"}
            for command in body
        ]
        self.commands[scope] = registered
        return 200, registered

    def _channel(self, request: web.Request) -> FakeChannel:
        channel = self.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _message(self, message_id: int, channel_id: int) -> FakeMessage:
        message = self.messages.get(message_id)
        if message is None or message.channel_id != channel_id:
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    def refuse(self, channel: FakeChannel, status: int = 403, code: int = 50007) -> None:
        """Answer every new message in `channel` with an error until `refusing` is cleared; by default
        Discord's "Cannot send messages to this user"."""
        self.refusing[channel.id] = DiscordError(status, code, "Cannot send messages to this user")

    async def _create_dm(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        """Open (or find) the DM with a user. Discord opens it whatever the user's privacy settings; it is
        posting in it that they may refuse."""
        user = self.users.get(int(body.get("recipient_id") or 0))
        if user is None or user.bot:
            raise DiscordError(400, 50033, "Invalid Recipient(s)")
        return 200, self.dm_channel(user).payload()

    async def _post_message(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        channel = self._channel(request)
        if channel.type == FORUM:  # only a new post (a thread) can be made there
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        if channel.id in self.refusing:
            raise self.refusing[channel.id]
        if channel.recipient is not None and not channel.recipient.dms_open:
            raise DiscordError(403, 50007, "Cannot send messages to this user")
        message = await self._create(channel, body, files=request.get(UPLOADS, {}))
        return 200, message.payload(cdn=self.cdn_url, guild=self.guilds.get(channel.guild_id or 0))

    async def _patch_message(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        channel = self._channel(request)
        message = self._message(int(request.match_info["message_id"]), channel.id)
        if message.author is not self.bot:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        await self._edit(message, body)
        return 200, message.payload(cdn=self.cdn_url, guild=self.guilds.get(channel.guild_id or 0))

    async def _post_typing(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        channel = self._channel(request)
        self.typing[channel.id] = self.typing.get(channel.id, 0) + 1
        return 204, None

    async def _post_thread(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        parent = self._channel(request)
        starter = self._message(int(request.match_info["message_id"]), parent.id)
        if parent.type != 0:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        if starter.id in self.channels:  # a thread started on a message takes the message's id
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        name = str(body.get("name", ""))
        if not 1 <= len(name) <= 100:
            raise DiscordError(400, 50035, "Invalid Form Body: name must be 1-100 characters")
        thread = FakeChannel(starter.id, 11, name, parent.guild_id, parent.id, self.bot.id)
        self.channels[thread.id] = thread
        await self._dispatch(
            "THREAD_CREATE", thread.guild_id, lambda session: {**thread.payload(), "newly_created": True}
        )
        return 201, thread.payload()

    async def _post_callback(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        interaction = self.interactions.get(int(request.match_info["interaction_id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.callbacks:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        kind, data = int(body["type"]), body.get("data") or {}
        if (kind == 8) != (interaction.type == 4):  # autocomplete is answered with choices, and only it
            raise DiscordError(400, 50035, "Invalid Form Body")
        message: FakeMessage | None = None
        if kind == 8:
            _validate_choices(data.get("choices"))
        elif kind in (4, 5):
            channel = self.channels[interaction.channel_id]
            flags = int(data.get("flags", 0)) & EPHEMERAL
            if kind == 5:
                message = await self._create(channel, {"flags": flags | LOADING}, interaction=interaction)
            else:
                message = await self._create(channel, {**data, "flags": flags}, interaction=interaction)
            interaction.original_message_id = message.id
        elif kind in (6, 7):
            if interaction.type not in (3, 5):  # a button's press, or a modal's submit
                raise DiscordError(400, 50035, "Invalid Form Body: only a component's message can be updated")
        elif kind == 9:
            if interaction.type not in (2, 3):  # never in answer to a modal's submit or an autocomplete
                raise DiscordError(400, 50035, "Invalid Form Body: a modal answers a command or a component")
            _validate_modal(data)
            interaction.modal = data
        interaction.callbacks.append(body)
        self._changed()
        if request.query.get("with_response") not in ("1", "true"):
            return 204, None
        response: JSON = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.flags & EPHEMERAL),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            response["interaction"]["response_message_id"] = str(message.id)
            response["resource"]["message"] = message.payload()
        return 200, response

    def _interaction_by_token(self, request: web.Request) -> FakeInteraction:
        if request.match_info["application_id"] != str(self.application_id):
            raise DiscordError(404, 10015, "Unknown Webhook")
        for interaction in self.interactions.values():
            if interaction.token == request.match_info["token"]:
                if not interaction.callbacks:
                    raise DiscordError(404, 10015, "Unknown Webhook")  # no followups before a response
                return interaction
        raise DiscordError(404, 10015, "Unknown Webhook")

    async def _post_followup(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        interaction = self._interaction_by_token(request)
        channel = self.channels[interaction.channel_id]
        body = {**body, "flags": int(body.get("flags", 0)) & EPHEMERAL}
        message = await self._create(channel, body, interaction=interaction)
        if request.query.get("wait") not in ("1", "true", "True"):
            return 204, None
        return 200, message.payload(cdn=self.cdn_url)

    async def _patch_followup(self, request: web.Request, body: JSON) -> tuple[int, Any]:
        interaction = self._interaction_by_token(request)
        raw_id = request.match_info["message_id"]
        message_id = interaction.original_message_id if raw_id == "@original" else int(raw_id)
        message = self.messages.get(message_id or 0)
        if message is None or message.interaction_id != interaction.id:
            raise DiscordError(404, 10008, "Unknown Message")
        await self._edit(message, body)
        return 200, message.payload(cdn=self.cdn_url)

    # -- messages ----------------------------------------------------------------------------------

    async def _create(
        self,
        channel: FakeChannel,
        body: JSON,
        *,
        interaction: FakeInteraction | None = None,
        files: dict[int, tuple[str, bytes]] | None = None,
    ) -> FakeMessage:
        flags = int(body.get("flags") or 0)
        attachments = _attachments(body, files or {})
        if sum(len(item.data) for item in attachments) > self.upload_limit:
            raise DiscordError(413, 40005, "Request entity too large")
        if not flags & LOADING:
            _validate(body, creating=True, with_files=bool(attachments))
        content = str(body.get("content") or "")
        message = FakeMessage(
            snowflake(),
            channel.id,
            self.bot,
            content,
            channel.guild_id,
            [] if flags & LOADING else [content],
            components=list(body.get("components") or []),
            embeds=list(body.get("embeds") or []),
            attachments=attachments,
            flags=flags,
        )
        if interaction is not None:
            message.webhook_id, message.interaction_id = self.application_id, interaction.id
        reference = body.get("message_reference")
        if reference:
            message.reference = self._message(int(reference["message_id"]), channel.id)
        if not flags & LOADING:  # a "thinking" placeholder has no content that could mention anyone
            self._record_mentions(message, body)
        self.messages[message.id] = message
        await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def _edit(self, message: FakeMessage, body: JSON) -> None:
        _validate(body, creating=False)
        if "content" in body:
            message.content = str(body["content"] or "")
        if "components" in body:
            message.components = list(body["components"] or [])
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        message.flags &= ~LOADING
        if not message.versions or message.versions[-1] != message.content:
            message.versions.append(message.content)
        self._record_mentions(message, body)
        await self._dispatch_message("MESSAGE_UPDATE", message)

    def _record_mentions(self, message: FakeMessage, body: JSON) -> None:
        allowed = body.get("allowed_mentions")
        message.allowed_mentions.append(allowed)
        message.pinged |= pings(message.content, allowed)

    def _changed(self) -> None:
        for waiter in self._waiters:
            waiter.set()


async def _read_body(request: web.Request) -> Any:
    """The JSON body; for a multipart upload, `payload_json`, with the `files[n]` parts kept in
    `request[UPLOADS]`."""
    if not request.can_read_body:
        return {}
    if request.content_type != "multipart/form-data":
        return json.loads(await request.text() or "{}")
    body: JSON = {}
    files: dict[int, tuple[str, bytes]] = {}
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            body = json.loads(await part.text() or "{}")
        elif index := re.fullmatch(r"files\[(\d+)\]", part.name or ""):
            files[int(index[1])] = (part.filename or "unknown", bytes(await part.read()))
    request[UPLOADS] = files
    return body


def _attachments(body: JSON, files: dict[int, tuple[str, bytes]]) -> list[FakeAttachment]:
    """The uploaded files, named as `attachments` in the payload names them (it refers to files[n] by n)."""
    named = {int(entry["id"]): entry.get("filename") for entry in body.get("attachments") or ()}
    if set(named) - set(files):
        raise DiscordError(400, 50035, "Invalid Form Body: attachments refer to files that were not uploaded")
    return [
        FakeAttachment(snowflake(), named.get(index) or filename, data)
        for index, (filename, data) in sorted(files.items())
    ]


def _validate(body: JSON, *, creating: bool, with_files: bool = False) -> None:
    """Discord's limits on what a message may carry, answered as Discord answers them."""
    content = body.get("content") or ""
    if len(content) > MAX_CONTENT:
        raise DiscordError(400, 50035, f"Invalid Form Body: content must be {MAX_CONTENT} or fewer in length")
    rows = body.get("components") or []
    if creating and not content and not body.get("embeds") and not rows and not with_files:
        raise DiscordError(400, 50006, "Cannot send an empty message")
    _validate_embeds(body.get("embeds") or [])
    _validate_allowed_mentions(body.get("allowed_mentions"))
    if len(rows) > MAX_ROWS:
        raise DiscordError(400, 50035, f"Invalid Form Body: at most {MAX_ROWS} action rows")
    for row in rows:
        buttons = row.get("components", [])
        if row.get("type") != 1 or not 1 <= len(buttons) <= MAX_PER_ROW:
            raise DiscordError(400, 50035, f"Invalid Form Body: an action row holds 1-{MAX_PER_ROW} buttons")
        for button in buttons:
            label = button.get("label") or ""
            if len(label) > MAX_LABEL or (button.get("style") == 5) != bool(button.get("url")):
                raise DiscordError(400, 50035, "Invalid Form Body: bad button label or url")
            if button.get("style") != 5 and not 1 <= len(button.get("custom_id") or "") <= MAX_CUSTOM_ID:
                raise DiscordError(400, 50035, f"Invalid Form Body: custom_id must be 1-{MAX_CUSTOM_ID} long")


def _validate_modal(modal: JSON) -> None:
    """A modal: a custom_id, a title of 1-45 characters, and 1-5 text inputs (in action rows or labels)."""
    title, custom_id = str(modal.get("title") or ""), str(modal.get("custom_id") or "")
    rows = modal.get("components") or []
    if not 1 <= len(title) <= MAX_MODAL_TITLE or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
        raise DiscordError(400, 50035, "Invalid Form Body: a modal needs a title (1-45) and a custom_id")
    if not 1 <= len(rows) <= MAX_ROWS or len(_modal_inputs(modal)) != len(rows):
        raise DiscordError(400, 50035, "Invalid Form Body: a modal holds 1-5 rows of one text input each")
    for spec in _modal_inputs(modal):
        label = spec.get("label")
        if not 1 <= len(str(spec.get("custom_id") or "")) <= MAX_CUSTOM_ID or spec.get("style") not in (1, 2):
            raise DiscordError(400, 50035, "Invalid Form Body: a text input needs a custom_id and a style")
        if label is not None and not 1 <= len(label) <= MAX_INPUT_LABEL:
            raise DiscordError(
                400, 50035, f"Invalid Form Body: a text input's label is 1-{MAX_INPUT_LABEL} long"
            )
        if not 0 <= spec.get("min_length", 0) <= spec.get("max_length", MAX_INPUT_LENGTH) <= MAX_INPUT_LENGTH:
            raise DiscordError(400, 50035, "Invalid Form Body: a text input's lengths are 0-4000")


def _modal_inputs(modal: JSON) -> list[JSON]:
    """The modal's text inputs: each alone in an action row, or as a label's component."""
    found = []
    for row in modal.get("components") or []:
        inner = row.get("components") if row.get("type") == 1 else [row.get("component") or {}]
        if row.get("type") in (1, 18) and len(inner or []) == 1 and inner[0].get("type") == 4:
            found.append(inner[0])
    return found


def _validate_embeds(embeds: list[JSON]) -> None:
    if len(embeds) > MAX_EMBEDS:
        raise DiscordError(400, 50035, f"Invalid Form Body: at most {MAX_EMBEDS} embeds")
    total = 0
    for embed in embeds:
        texts = {
            "title": embed.get("title") or "",
            "description": embed.get("description") or "",
            "footer": (embed.get("footer") or {}).get("text") or "",
            "author": (embed.get("author") or {}).get("name") or "",
        }
        for key, text in texts.items():
            if len(text) > EMBED_LIMITS[key]:
                raise DiscordError(400, 50035, f"Invalid Form Body: embed {key} is too long")
        fields = embed.get("fields") or []
        if len(fields) > MAX_FIELDS:
            raise DiscordError(400, 50035, f"Invalid Form Body: at most {MAX_FIELDS} embed fields")
        for item in fields:
            name, value = item.get("name") or "", item.get("value") or ""
            if not 1 <= len(name) <= MAX_FIELD_NAME or not 1 <= len(value) <= MAX_FIELD_VALUE:
                raise DiscordError(400, 50035, "Invalid Form Body: embed field name or value length")
            total += len(name) + len(value)
        url = embed.get("url")
        if url is not None and not str(url).startswith(("https://", "http://")):
            raise DiscordError(400, 50035, "Invalid Form Body: embed url: Not a well formed URL.")
        total += sum(len(text) for text in texts.values())
    if total > MAX_EMBED_TOTAL:
        raise DiscordError(400, 50035, f"Invalid Form Body: embeds exceed {MAX_EMBED_TOTAL} characters")


def _check_value(command: str, spec: JSON, value: object) -> None:
    """A value Discord's client would let a user give for the option `spec`."""
    kind = {3: str, 4: int, 5: bool}.get(spec["type"])
    if kind is None or type(value) is not kind:
        raise AssertionError(f"/{command}: option {spec['name']!r} (type {spec['type']}) got {value!r}")
    if "choices" in spec and value not in [choice["value"] for choice in spec["choices"]]:
        raise AssertionError(f"/{command}: {value!r} is not a choice of {spec['name']!r}")
    if isinstance(value, str) and not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", 6000):
        raise AssertionError(f"/{command}: option {spec['name']!r} is too short or too long")


def _validate_choices(choices: object) -> None:
    """Autocomplete answers: at most 25 choices, names of 1-100 characters, string values of at most 100."""
    ok = isinstance(choices, list) and len(choices) <= MAX_CHOICES
    for choice in choices if isinstance(choices, list) else []:
        value = choice.get("value")
        ok = ok and 1 <= len(str(choice.get("name", ""))) <= MAX_CHOICE and len(str(value)) <= MAX_CHOICE
    if not ok:
        raise DiscordError(400, 50035, "Invalid Form Body")


def _validate_allowed_mentions(allowed: JSON | None) -> None:
    """`parse` for a kind excludes a list of that kind, as Discord insists."""
    for kind in ("users", "roles"):
        if allowed is not None and kind in allowed.get("parse", []) and kind in allowed:
            raise DiscordError(
                400, 50035, f"Invalid Form Body: parse:[{kind}] and {kind}: [ids] are mutually exclusive"
            )
