"""A fake Telegram Bot API for the real python-telegram-bot client, on loopback.

`FakeTelegram` serves `/bot<token>/<method>` the way api.telegram.org does: form parameters with
JSON-encoded values, `{"ok": true, "result": ...}` answers, 400s with Telegram's descriptions ("message
is not modified", "can't parse entities"), and flood control answered with real 429s and
`retry_after`. Tests drive it as users would (`say`, `press`, `join`) and observe it as users would see
it (`bot_messages`, edit `history`, `drafts`, uploaded documents), waiting on conditions rather than
sleeping. Forum topics open with their service message, which messages in the topic reply to, as in
the real API. Once a webhook is set (setWebhook), updates are POSTed to it in order with the secret
token header, each retried until answered 2xx, and getUpdates is refused with 409, as Telegram does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from fakes.server import serve
from fakes.telegram.limits import FloodControl, Limits
from fakes.telegram.markup import BadRequest, read, utf16_length
from fakes.telegram.state import (
    ANONYMOUS_ADMIN,
    CHANNEL_BOT,
    FakeChat,
    FakeDocument,
    FakeDraft,
    FakeMessage,
    FakeUser,
    RequestRecord,
)

DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""getFile refuses larger files: "file is too big"."""
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
MAX_TOPIC_NAME = 128
MEMBER_STATUSES = ("creator", "administrator", "member", "left", "kicked")
ADMIN_RIGHTS = (
    "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
    "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories", "can_edit_stories",
    "can_delete_stories", "can_pin_messages",
)  # fmt: skip
"""The rights a ChatMemberAdministrator always states (a fake admin has them all)."""
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)
FLOODED = frozenset(
    {
        "sendMessage",
        "editMessageText",
        "sendMessageDraft",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAudio",
        "createForumTopic",
        "closeForumTopic",
    }
)
"""Methods that post or change visible content (topics open and close with a service message), and so
count towards flood control."""

Params = dict[str, Any]
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass(frozen=True)
class Webhook:
    """What setWebhook registered."""

    url: str
    secret_token: str | None
    allowed_updates: list[str] | None


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int = 0) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


class FakeTelegram:
    def __init__(
        self,
        token: str = "123456:TEST-token",
        *,
        username: str = "switchboard_bot",
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        webhook_retry: float = 0.05,
        privacy_mode: bool = False,
    ) -> None:
        self.token = token
        self.privacy_mode = privacy_mode
        """BotFather's group privacy: on, the bot gets only commands, mentions of it and replies to it
        from a group it is not an admin of, and getMe says it cannot read all group messages. Off here by
        default, so group tests see every message, as a bot with privacy off does."""
        self.bot = FakeUser(int(token.split(":")[0]), "Switchboard", username, is_bot=True)
        self.flood = FloodControl(limits or Limits(), clock)
        self.chats: dict[int, FakeChat] = {}
        self.messages: dict[tuple[int, int], FakeMessage] = {}
        self.drafts: dict[tuple[int, int], FakeDraft] = {}
        self.requests: list[RequestRecord] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}
        """setMyCommands by scope (the scope's JSON, "default" for none), then "@" and the language code
        for a menu shown to users of that language."""
        self.callback_answers: dict[str, Params] = {}
        self.refusing: dict[int, ApiError] = {}
        """Chats where sendMessage is answered with this error until removed; see `refuse`."""
        self.topics: dict[tuple[int, int], str] = {}
        self.closed_topics: set[tuple[int, int]] = set()
        self.members: dict[tuple[int, int], str] = {}
        """getChatMember statuses by (chat id, user id); users seen but not listed have "left"."""
        self.users: dict[int, FakeUser] = {}
        self.files: dict[str, tuple[str, bytes]] = {}
        """Files users sent, by file_id: (file_path, bytes)."""
        self.downloads: list[str] = []
        """The file_path of every download from the file URL, in order."""
        self.webhook: Webhook | None = None
        self.webhook_retry = webhook_retry
        """Seconds before a failed webhook delivery is tried again (Telegram backs off for longer)."""
        self.deliveries: list[tuple[int, int]] = []
        """Every webhook POST: (update_id, HTTP status), status 0 when nothing answered."""
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._ids = itertools.count(1000)
        self._tick = asyncio.Event()
        self._closing = False
        self.allowed_updates: list[str] | None = None
        """The update kinds the last getUpdates asked for; None for Telegram's default."""
        self._handlers: dict[str, Callable[[Params], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "sendMessageDraft": self._send_message_draft,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "sendPhoto": self._send_media,
            "sendDocument": self._send_document,
            "sendVideo": self._send_media,
            "sendAudio": self._send_media,
            "setMyCommands": self._set_my_commands,
            "createForumTopic": self._create_forum_topic,
            "closeForumTopic": self._close_forum_topic,
            "getChatMember": self._get_chat_member,
            "getFile": self._get_file,
        }

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on an ephemeral port; yield the base URL to give PTB (`.../bot`, the token is appended)."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._endpoint)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        async with serve(app) as url, aiohttp.ClientSession() as session:
            delivery = asyncio.create_task(self._deliver(session), name="fake-telegram-webhook")
            try:
                yield f"{url}/bot"
            finally:
                self._closing = True  # release long polls still parked here, so shutdown is immediate
                self._notify()
                delivery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await delivery

    # ---- driving it, as users would ----

    def user(
        self, first_name: str, username: str | None = None, *, language_code: str | None = None
    ) -> FakeUser:
        user = FakeUser(next(self._ids), first_name, username, language_code=language_code)
        self.users[user.id] = user
        return user

    def join(self, chat: FakeChat, user: FakeUser, status: str = "member") -> None:
        """Make `user` a member of `chat` with `status` ("creator", "administrator", "member", "left",
        "kicked"), as getChatMember will report it."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown member status {status!r}")
        self.users[user.id] = user
        self.members[(chat.id, user.id)] = status

    def private_chat(self, user: FakeUser) -> FakeChat:
        return self._add_chat(FakeChat(user.id, "private", user.first_name))

    def channel(self, title: str) -> FakeChat:
        """A channel, which users can post on behalf of in groups (`say(..., as_chat=channel)`)."""
        return self._add_chat(FakeChat(-1_000_000_000_000 - next(self._ids), "channel", title))

    def group(self, title: str, *, forum: bool = False) -> FakeChat:
        return self._add_chat(FakeChat(-1_000_000_000_000 - next(self._ids), "supergroup", title, forum))

    def open_topic(self, chat: FakeChat, name: str, by: FakeUser | None = None) -> int:
        """A forum topic, as a user (`by`, or an admin) would create it in the Telegram app."""
        return self._open_topic(chat, name, by or FakeUser(1, "Forum admin")).message_id

    def say(
        self,
        chat: FakeChat,
        user: FakeUser,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to: FakeMessage | None = None,
        as_chat: FakeChat | None = None,
        forwarded_from: FakeUser | str | None = None,
    ) -> FakeMessage:
        """A user sends `text`; mentions and a leading command get their entities as Telegram adds them.

        In a topic, a message that replies to nothing else replies to the topic's service message. With
        `as_chat` the user posts on behalf of that chat: as the group's anonymous admin when it is the
        group itself, else as a channel; `from` is then Telegram's placeholder, as the Bot API says.
        With `forwarded_from` it is a forward of that user's message (a name alone: a user who hides
        their account in forwards, whom the Bot API names but does not identify)."""
        if thread_id is not None and reply_to is None:
            reply_to = self.messages.get((chat.id, thread_id))
        if as_chat is not None:
            user = ANONYMOUS_ADMIN if as_chat.id == chat.id else CHANNEL_BOT
        message = self._store(
            chat, user, text, _detected_entities(text), thread_id=thread_id, reply_to=reply_to
        )
        message.sender_chat = as_chat
        message.forwarded_from = forwarded_from
        self._push({"message": message.to_json()})
        return message

    def edit(self, message: FakeMessage, text: str) -> None:
        """The user edits their message: Telegram sends an `edited_message` update with `edit_date`."""
        message.text = text
        message.entities = _detected_entities(text)
        self._push({"edited_message": {**message.to_json(), "edit_date": int(time.time())}})

    def send_file(
        self,
        chat: FakeChat,
        user: FakeUser,
        kind: str,
        data: bytes,
        caption: str = "",
        *,
        mime: str = "",
        name: str = "",
        duration: int | None = None,
        emoji: str = "",
        thread_id: int | None = None,
        sized: bool = True,
    ) -> FakeMessage:
        """A user sends a file as `kind` ("photo", "document", "voice", "audio", "video", "video_note",
        "sticker"), with a caption; the bot can then getFile and download it. `sized=False` leaves out
        `file_size`, which the Bot API marks optional: only getFile then tells a file's size."""
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = (f"{kind}s/{file_id}_{name or kind}", data)
        described: dict[str, Any] = {"file_id": file_id, "file_unique_id": f"u{file_id}"}
        if sized:
            described["file_size"] = len(data)
        if mime:
            described["mime_type"] = mime
        if name:
            described["file_name"] = name
        if duration is not None:
            described["duration"] = duration
        if kind == "sticker":
            described.update(type="regular", width=512, height=512, is_animated=False, is_video=False)
            if emoji:
                described["emoji"] = emoji
        shown: Any = [{**described, "width": 640, "height": 480}] if kind == "photo" else described
        if kind == "video_note":
            described["length"] = 240
        reply_to = self.messages.get((chat.id, thread_id)) if thread_id is not None else None
        message = self._store(
            chat, user, caption, _detected_entities(caption), thread_id=thread_id, reply_to=reply_to
        )
        message.file = (kind, shown)
        self._push({"message": message.to_json()})
        return message

    def press(self, message: FakeMessage, data: str, user: FakeUser) -> str:
        """A user presses the inline button carrying callback `data` under `message`; returns the query id."""
        if data not in {button.get("callback_data") for button in message.buttons}:
            raise AssertionError(f"no button with callback_data {data!r} on message {message.message_id}")
        query_id = str(next(self._ids))
        self._push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user.to_json(),
                    "message": message.to_json(),
                    "chat_instance": str(message.chat.id),
                    "data": data,
                }
            }
        )
        return query_id

    def block_bot(self, user: FakeUser) -> None:
        """`user` blocks the bot: sending to their private chat is refused from now on, and the bot gets a
        my_chat_member update saying it was kicked (if it asked for those)."""
        chat = self.chats.get(user.id) or self.private_chat(user)
        self.refuse(chat)
        bot = self.bot.to_json()
        self._push(
            {
                "my_chat_member": {
                    "chat": chat.to_json(),
                    "from": user.to_json(),
                    "date": int(time.time()),
                    "old_chat_member": {"status": "member", "user": bot},
                    "new_chat_member": {"status": "kicked", "user": bot, "until_date": 0},
                }
            }
        )

    def refuse(
        self, chat: FakeChat, code: int = 403, description: str = "bot was blocked by the user"
    ) -> None:
        """Answer sendMessage in `chat` with an error until `refusing` is cleared: by default a user who
        blocked the bot; 502 "Bad Gateway" for a failure worth retrying."""
        prefix = {400: "Bad Request: ", 403: "Forbidden: "}.get(code, "")
        self.refusing[chat.id] = ApiError(code, prefix + description)

    # ---- observing it ----

    def bot_messages(self, chat: FakeChat, thread_id: int | None = None) -> list[FakeMessage]:
        """The bot's messages in a chat (and topic, if given), oldest first."""
        return [
            m
            for (chat_id, _), m in sorted(self.messages.items())
            if chat_id == chat.id
            and m.sender.is_bot
            and m.forum_topic_created is None
            and (thread_id is None or m.thread_id == thread_id)
        ]

    def drafts_in(self, chat: FakeChat) -> list[FakeDraft]:
        return [draft for (chat_id, _), draft in self.drafts.items() if chat_id == chat.id]

    def count(self, method: str, status: int | None = None) -> int:
        return sum(1 for r in self.requests if r.method == method and (status is None or r.status == status))

    def refusals(self, status: int) -> list[RequestRecord]:
        return [r for r in self.requests if r.status == status]

    @property
    def unconfirmed(self) -> int:
        """Updates the bot has not yet confirmed (by asking getUpdates for a later offset)."""
        return len(self._updates)

    @property
    def not_modified(self) -> int:
        return sum(1 for r in self.requests if r.description.startswith("message is not modified"))

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
        """Return once `predicate()` holds; re-checked after every request and injected update."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {within}s waiting for {what or predicate}")
            tick = self._tick
            try:
                await asyncio.wait_for(tick.wait(), remaining)
            except TimeoutError:
                pass

    # ---- the wire ----

    async def _endpoint(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
        except ApiError as exc:
            self._record(method, params, exc.code, exc.description)
            body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.retry_after:
                body["parameters"] = {"retry_after": exc.retry_after}
            return web.json_response(body, status=exc.code)
        if method != "getUpdates":
            self._record(method, params, 200)
        return web.json_response({"ok": True, "result": result})

    def _record(self, method: str, params: Params, status: int, description: str = "") -> None:
        prefix = "Bad Request: " if status == 400 else ("Too Many Requests: " if status == 429 else "")
        self.requests.append(RequestRecord(method, params, status, description.removeprefix(prefix)))
        self._notify()

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    def _flood_check(self, chat: FakeChat) -> None:
        retry_after = self.flood.check(chat.id, chat.is_group)
        if retry_after:
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    async def _download(self, request: web.Request) -> web.Response:
        """The file URL a bot downloads from after getFile (`/file/bot<token>/<file_path>`)."""
        path = request.match_info["path"]
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        found = next((data for file_path, data in self.files.values() if file_path == path), None)
        if found is None:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(path)
        self._notify()
        return web.Response(body=found, content_type="application/octet-stream")

    # ---- methods ----

    async def _get_file(self, params: Params) -> dict[str, Any]:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        if len(data) > DOWNLOAD_LIMIT:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(data),
            "file_path": path,
        }

    async def _get_me(self, params: Params) -> dict[str, Any]:
        reads_all = not self.privacy_mode
        return {**self.bot.to_json(), "can_join_groups": True, "can_read_all_group_messages": reads_all}

    async def _set_webhook(self, params: Params) -> bool:
        url = str(params.get("url") or "")
        if not url:  # an empty url removes the webhook
            return await self._delete_webhook(params)
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname != "127.0.0.1":  # plain HTTP only on loopback
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN.fullmatch(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if _json(params, "drop_pending_updates"):
            self._updates.clear()
        self.webhook = Webhook(url, secret, _json(params, "allowed_updates"))
        self._notify()
        return True

    async def _delete_webhook(self, params: Params) -> bool:
        if _json(params, "drop_pending_updates"):
            self._updates.clear()
        self.webhook = None
        self._notify()
        return True

    async def _deliver(self, session: aiohttp.ClientSession) -> None:
        """Telegram's side of a webhook: POST the oldest pending update until it is answered 2xx, then
        the next. Updates of a kind left out of `allowed_updates` are dropped unsent."""
        while True:
            tick, hook = self._tick, self.webhook
            if hook is None or not self._updates:
                await tick.wait()
                continue
            update = self._updates[0]
            if not _wanted(update, hook.allowed_updates):
                self._updates.remove(update)
                continue
            headers = {SECRET_HEADER: hook.secret_token} if hook.secret_token else {}
            try:
                async with session.post(hook.url, json=update, headers=headers) as response:
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            self.deliveries.append((update["update_id"], status))
            if 200 <= status < 300:
                with contextlib.suppress(ValueError):  # deleteWebhook may have dropped it meanwhile
                    self._updates.remove(update)
            self._notify()
            if not 200 <= status < 300:
                await asyncio.sleep(self.webhook_retry)

    async def _get_updates(self, params: Params) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        if "allowed_updates" in params:  # kept for later calls, as Telegram does
            self.allowed_updates = _json(params, "allowed_updates") or None
        self._updates = [
            u for u in self._updates if u["update_id"] >= offset and _wanted(u, self.allowed_updates)
        ]
        timeout = float(params.get("timeout") or 0)
        if not self._updates and timeout > 0:
            try:
                await self.wait_for(lambda: bool(self._updates) or self._closing, timeout)
            except AssertionError:
                pass
        return self._updates[: int(params.get("limit") or 100)]

    async def _send_message(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        if chat.id in self.refusing:
            raise self.refusing[chat.id]
        text, entities = _content(params, "text", MAX_TEXT)
        markup = _markup(params)
        thread_id = self._thread(chat, params)
        reply_to = self._reply_target(chat, params)
        self._flood_check(chat)
        message = self._store(chat, self.bot, text, entities, thread_id=thread_id, reply_to=reply_to)
        message.reply_markup = markup
        return message.to_json()

    async def _edit_message_text(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        message = self.messages.get((chat.id, int(params.get("message_id") or 0)))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if not message.sender.is_bot or message.has_media or message.forum_topic_created is not None:
            raise ApiError(400, "Bad Request: message can't be edited")
        text, entities = _content(params, "text", MAX_TEXT)
        markup = _markup(params)
        if markup is not None and "inline_keyboard" not in markup:  # an edit carries inline keyboards only
            raise ApiError(400, "Bad Request: inline keyboard expected")
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise ApiError(400, f"Bad Request: {NOT_MODIFIED}")
        self._flood_check(chat)
        message.text, message.entities, message.reply_markup = text, entities, markup
        message.history.append(text)
        return message.to_json()

    async def _send_message_draft(self, params: Params) -> bool:
        chat = self._chat(params)
        if chat.type != "private":
            raise ApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        draft_id = int(params.get("draft_id") or 0)
        if draft_id == 0:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        text, _entities = _content(params, "text", MAX_TEXT, optional=True)
        self._flood_check(chat)
        draft = self.drafts.setdefault(
            (chat.id, draft_id), FakeDraft(chat.id, draft_id, self._thread(chat, params))
        )
        draft.history.append(text)
        return True

    async def _answer_callback_query(self, params: Params) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id in self.callback_answers:
            raise ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = params
        return True

    async def _send_chat_action(self, params: Params) -> bool:
        self._chat(params)
        return True

    async def _send_media(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        media = next((params[k] for k in ("photo", "video", "audio") if k in params), None)
        if not isinstance(media, str) or not media:
            raise ApiError(400, "Bad Request: there is no media in the request")
        caption, entities = _content(params, "caption", MAX_CAPTION, optional=True)
        thread_id = self._thread(chat, params)
        self._flood_check(chat)
        message = self._store(chat, self.bot, caption, entities, thread_id=thread_id)
        message.photo = media
        message.reply_markup = _markup(params)
        return message.to_json()

    async def _send_document(self, params: Params) -> dict[str, Any]:
        """A URL or file_id, or a multipart upload (sent as the field itself or as attach://name)."""
        chat = self._chat(params)
        document = params.get("document")
        if isinstance(document, str) and document.startswith("attach://"):
            document = params.get(document.removeprefix("attach://"))
        if isinstance(document, Upload):
            if not document.content:
                raise ApiError(400, "Bad Request: file must be non-empty")
            file = FakeDocument(document.filename, document.content_type, content=document.content)
        elif isinstance(document, str) and document:
            file = FakeDocument(document.rsplit("/", 1)[-1], url=document)
        else:
            raise ApiError(400, "Bad Request: there is no document in the request")
        caption, entities = _content(params, "caption", MAX_CAPTION, optional=True)
        thread_id = self._thread(chat, params)
        self._flood_check(chat)
        message = self._store(chat, self.bot, caption, entities, thread_id=thread_id)
        message.document = file
        message.reply_markup = _markup(params)
        return message.to_json()

    async def _set_my_commands(self, params: Params) -> bool:
        commands = _json(params, "commands") or []
        for command in commands:
            if (
                not str(command.get("command", "")).islower()
                or not 1 <= len(command.get("description") or "") <= 256
            ):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        scope, language = params.get("scope"), params.get("language_code")
        if language is not None and not (len(str(language)) == 2 and str(language).isalpha()):
            raise ApiError(400, "Bad Request: LANG_CODE_INVALID")  # a two-letter ISO 639-1 code, or none
        key = "default" if scope is None else str(scope)
        self.commands[key if language is None else f"{key}@{language}"] = commands
        return True

    async def _create_forum_topic(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        name = str(params.get("name", ""))
        if not chat.is_forum:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        if not 1 <= len(name) <= MAX_TOPIC_NAME:
            raise ApiError(400, "Bad Request: invalid forum topic name")
        self._flood_check(chat)
        opened = self._open_topic(chat, name, self.bot)
        return {"message_thread_id": opened.message_id, **(opened.forum_topic_created or {})}

    async def _close_forum_topic(self, params: Params) -> bool:
        chat = self._chat(params)
        key = (chat.id, int(params.get("message_thread_id") or 0))
        if key not in self.topics:
            raise ApiError(400, "Bad Request: TOPIC_ID_INVALID")
        if key in self.closed_topics:
            raise ApiError(400, "Bad Request: TOPIC_NOT_MODIFIED")
        self._flood_check(chat)
        self.closed_topics.add(key)
        self._notify()
        return True

    async def _get_chat_member(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        user = self.users.get(int(params.get("user_id") or 0))
        if user is None:
            raise ApiError(400, "Bad Request: user not found")
        status = self.members.get((chat.id, user.id), "left")
        extra: dict[str, Any] = {}
        if status == "creator":
            extra = {"is_anonymous": False}
        elif status == "administrator":
            extra = {"is_anonymous": False, "can_be_edited": False, "can_manage_topics": True}
            extra |= dict.fromkeys(ADMIN_RIGHTS, True)
        elif status == "kicked":
            extra = {"until_date": 0}
        return {"status": status, "user": user.to_json(), **extra}

    # ---- helpers ----

    def _add_chat(self, chat: FakeChat) -> FakeChat:
        self.chats[chat.id] = chat
        self._message_ids[chat.id] = itertools.count(1)
        return chat

    def _open_topic(self, chat: FakeChat, name: str, by: FakeUser) -> FakeMessage:
        """Open a topic: its service message's id is the topic's message_thread_id."""
        message_id = next(self._message_ids[chat.id])
        self.topics[(chat.id, message_id)] = name
        message = FakeMessage(chat, message_id, by, "", int(time.time()), thread_id=message_id)
        message.forum_topic_created = {"name": name, "icon_color": 7322096}
        self.messages[(chat.id, message_id)] = message
        self._notify()
        return message

    def _chat(self, params: Params) -> FakeChat:
        """The chat named; a user Telegram knows but who never started the bot has no chat with it yet,
        and a bot may not open one (403); an id nobody has is 400 "chat not found"."""
        try:
            chat_id = int(params.get("chat_id") or 0)
        except ValueError:
            raise ApiError(400, "Bad Request: chat not found") from None
        if chat_id in self.chats:
            return self.chats[chat_id]
        if chat_id in self.users:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        raise ApiError(400, "Bad Request: chat not found")

    def _thread(self, chat: FakeChat, params: Params) -> int | None:
        if params.get("message_thread_id") in (None, ""):
            return None
        thread_id = int(params["message_thread_id"])
        if chat.is_forum and (chat.id, thread_id) not in self.topics:
            raise ApiError(400, "Bad Request: message thread not found")
        return thread_id

    def _reply_target(self, chat: FakeChat, params: Params) -> FakeMessage | None:
        reply = _json(params, "reply_parameters")
        if not reply:
            return None
        target = self.messages.get((chat.id, int(reply["message_id"])))
        if target is None and not reply.get("allow_sending_without_reply"):
            raise ApiError(400, "Bad Request: message to be replied not found")
        return target

    def _store(
        self,
        chat: FakeChat,
        sender: FakeUser,
        text: str,
        entities: list[dict[str, Any]],
        *,
        thread_id: int | None = None,
        reply_to: FakeMessage | None = None,
    ) -> FakeMessage:
        message = FakeMessage(
            chat,
            next(self._message_ids[chat.id]),
            sender,
            text,
            int(time.time()),
            entities,
            None,
            thread_id,
            reply_to,
        )
        self.messages[(chat.id, message.message_id)] = message
        self._notify()
        return message

    def _push(self, update: dict[str, Any]) -> None:
        message = update.get("message") or update.get("edited_message")
        if message is not None and not self._delivered(message):
            return
        self._updates.append({"update_id": next(self._update_ids), **update})
        self._notify()

    def _delivered(self, message: dict[str, Any]) -> bool:
        """Whether privacy mode lets the bot see this message (see `privacy_mode`)."""
        chat = message["chat"]
        if not self.privacy_mode or chat["type"] == "private":
            return True
        if self.members.get((chat["id"], self.bot.id)) in ("administrator", "creator"):
            return True
        text = message.get("text") or message.get("caption") or ""
        replied = message.get("reply_to_message") or {}
        return (
            text.startswith("/")
            or f"@{self.bot.username}".lower() in text.lower()
            or (replied.get("from") or {}).get("id") == self.bot.id
        )


@dataclass(frozen=True)
class Upload:
    """A file sent as a multipart field."""

    filename: str
    content_type: str
    content: bytes


UNSENT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
"""Update kinds Telegram sends only to a bot that names them in allowed_updates."""


def _kind(update: dict[str, Any]) -> str:
    return next(key for key in update if key != "update_id")


def _wanted(update: dict[str, Any], allowed: list[str] | None) -> bool:
    """Whether Telegram sends `update` to a bot that asked for `allowed` (None or empty: the default)."""
    kind = _kind(update)
    return kind in allowed if allowed else kind not in UNSENT_BY_DEFAULT


async def _params(request: web.Request) -> Params:
    """Form or multipart fields (values JSON-encoded unless strings; files as `Upload`), or a JSON body."""
    if request.content_type == "application/json":
        return dict(await request.json())
    form = await request.post()
    params: Params = {}
    for key, value in form.items():
        if isinstance(value, web.FileField):
            params[key] = Upload(value.filename, value.content_type, value.file.read())
        elif isinstance(value, str):
            params[key] = value
        else:
            params[key] = bytes(value).decode()
    return params


def _json(params: Params, key: str) -> Any:
    value = params.get(key)
    return json.loads(value) if isinstance(value, str) and value else value


def _content(params: Params, key: str, limit: int, *, optional: bool = False) -> tuple[str, list[Any]]:
    raw = str(params.get(key) or "")
    entities_key = "caption_entities" if key == "caption" else "entities"
    try:
        text, entities = read(raw, params.get("parse_mode"), _json(params, entities_key))
    except BadRequest as exc:
        raise ApiError(400, f"Bad Request: {exc}") from None
    if not text.strip() and not optional:
        raise ApiError(400, f"Bad Request: message {key} is empty")
    if utf16_length(text) > limit:
        raise ApiError(
            400,
            "Bad Request: message caption is too long"
            if key == "caption"
            else "Bad Request: message is too long",
        )
    return text, entities


def _markup(params: Params) -> dict[str, Any] | None:
    markup = _json(params, "reply_markup")
    if not markup:
        return None
    if "force_reply" in markup:
        placeholder = markup.get("input_field_placeholder")
        if markup["force_reply"] is not True or (placeholder is not None and not 1 <= len(placeholder) <= 64):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            if data is None and not button.get("url"):
                raise ApiError(400, "Bad Request: inline keyboard button must have exactly one action")
    return dict(markup)


def _detected_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram's clients attach: @mentions, and a command at the start."""
    entities: list[dict[str, Any]] = []
    for match in re.finditer(r"(?<!\w)@\w{3,}|^/\w+(@\w+)?", text):
        kind = "bot_command" if match.group(0).startswith("/") else "mention"
        offset = utf16_length(text[: match.start()])
        entities.append({"type": kind, "offset": offset, "length": utf16_length(match.group(0))})
    return entities
