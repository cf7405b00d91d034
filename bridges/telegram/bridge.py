"""The Telegram bridge as one object bot.py can start and close beside the other bridges."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application

from bridges.base import BridgeStartError, finish_in_flight, never
from bridges.buttons import ButtonStore, DatabaseButtonStore
from bridges.catalogue import shipped_locales
from bridges.relay import Relay
from bridges.surface import Surface
from bridges.telegram.access import AllowList
from bridges.telegram.config import TelegramConfig
from bridges.telegram.desk import TelegramDesk
from bridges.telegram.desk import jump_link as topic_link
from bridges.telegram.handlers import ADMIN_COMMANDS, CHAT_SCOPE, PUBLIC_COMMANDS, CommandMenu, Handlers
from bridges.telegram.surface import Surfaces
from bridges.telegram.webhook import WebhookServer
from models import Conversation, utcnow
from models.queries import open_handoff_id_of

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER]
"""The updates the handlers use; Telegram is told to send no others, by polling or webhook. Edits
replace a queued message or are recorded; the bot's own membership changes say when a user blocks it
(their case then closes)."""


class TelegramBridge:
    platform = "telegram"

    def __init__(
        self,
        config: TelegramConfig,
        relay: Relay,
        *,
        buttons: ButtonStore | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.relay = relay
        self.app = (
            Application.builder()
            .token(config.token.get_secret_value())
            .base_url(config.base_url)
            .base_file_url(config.base_file_url)
            .concurrent_updates(config.concurrent_updates)
            .build()
        )
        store = buttons or DatabaseButtonStore(relay.db)
        self.surfaces = Surfaces(self.app.bot, config, config.edit_interval, store)
        self.desk = (
            TelegramDesk(
                self.app.bot,
                config.handoff,
                self.surfaces.budgets,
                relay.handoffs,
                max_retry_after=config.max_retry_after,
            )
            if config.handoff is not None
            else None
        )
        """The moderator desk (`[telegram.handoff]`), sharing the replies' budgets; whoever builds the
        bridge adds it to `relay.handoffs.desks` once the bridge has started."""
        allow_list = AllowList(
            config,
            self.surfaces,
            relay.catalogue,
            self._in_case,
            desk_chat=config.handoff.chat_id if config.handoff else None,
            now=now,
        )
        if allow_list.active:
            allow_list.install(self.app)
        self.handlers = Handlers(relay, config, self.surfaces, store, self.desk)
        self.handlers.install(self.app)
        self.webhook: WebhookServer | None = None
        """Our webhook server while it runs (webhook mode only)."""

    async def _in_case(self, user_id: int) -> bool:
        """Whether the user has an open case (the allow-lists let its answers through)."""
        async with self.relay.db() as session:
            return await session.scalar(open_handoff_id_of(self.platform, str(user_id))) is not None

    async def finished(self) -> None:
        await never()  # serves until closed

    def healthy(self) -> bool:
        updater = self.app.updater
        polling = updater is not None and updater.running
        return self.app.running and (polling or self.webhook is not None)

    def surface_for(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        """A `SurfaceFactory` for handoff notices and crash recovery."""
        return self.surfaces.for_place(platform, chat_id, thread_id)

    @staticmethod
    def jump_link(conversation: Conversation) -> str | None:
        """A `JumpLink` for the handoff notification (forum topics only; see `desk.jump_link`)."""
        return topic_link(conversation)

    async def start(self) -> None:
        """Log in (getMe), register the command menu, and start taking updates: by webhook if
        `webhook_url` is set, else by polling."""
        try:
            await self.app.initialize()
        except InvalidToken:
            raise BridgeStartError("telegram: the bot token was rejected; check [telegram] token") from None
        except TelegramError as exc:
            raise BridgeStartError(
                f"telegram: could not reach the Bot API at {self.config.base_url} ({type(exc).__name__})"
            ) from None
        await self._register_commands()
        await self.app.start()
        try:
            how = await self._take_updates()
        except (TelegramError, OSError) as exc:  # setWebhook refused, or the port is taken
            await self.app.stop()
            await self.app.shutdown()
            mode = "polling" if self.config.webhook_url is None else "webhook"
            raise BridgeStartError(f"telegram: could not start {mode} ({exc})") from None
        log.info("telegram: %s as @%s (%s)", how, self.app.bot.username, self.app.bot.id)
        if not self.app.bot.can_read_all_group_messages and self.relay.policy.triggers.reads_unaddressed(
            [CHAT_SCOPE]
        ):
            log.warning(
                "telegram: trigger rules answer group messages that do not mention the bot, but its privacy "
                "mode hides those: turn it off with @BotFather /setprivacy, or make the bot a group admin"
            )

    async def _take_updates(self) -> str:
        """Start polling, or our webhook server and then setWebhook with the secret (so Telegram is never
        pointed at a port we could not bind); say which, for the log."""
        updater, config = self.app.updater, self.config
        assert updater is not None
        if config.webhook_url is None:
            await updater.start_polling(
                poll_interval=config.poll_interval,
                timeout=int(config.poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=config.drop_pending_updates,
            )
            return "polling"
        assert config.webhook_secret is not None  # the config insists on it
        server = WebhookServer(config, self.app.bot, self.app.update_queue)
        await server.start()
        try:
            await self.app.bot.set_webhook(
                url=config.webhook_url,
                secret_token=config.webhook_secret.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=config.drop_pending_updates,
            )
        except BaseException:
            await server.stop()
            raise
        self.webhook = server
        return f"webhook on {config.webhook_listen} for {config.webhook_url}"

    async def _register_commands(self) -> None:
        """Everyone sees /start /reset /human /stop /usage; admins also see /agent /block /unblock in their
        private chat with the bot. The default menu is in the default language; users whose app speaks a
        shipped language get the menu in it (Telegram picks it by `language_code`)."""
        catalogue = self.relay.catalogue
        languages = [None, *(code for code in shipped_locales() if len(code) == 2)]
        for language in languages:
            words = catalogue.words(language)(CommandMenu)
            await self.app.bot.set_my_commands(_menu(PUBLIC_COMMANDS, words), language_code=language)
        words = catalogue.words()(CommandMenu)
        for admin in self.config.admins:
            try:
                await self.app.bot.set_my_commands(
                    _menu(ADMIN_COMMANDS, words), scope=BotCommandScopeChat(admin)
                )
            except TelegramError as exc:  # the admin has not started a chat with the bot yet
                log.warning("telegram: could not set the admin command menu for %s: %s", admin, exc)

    async def close(self, grace: float = 20.0) -> None:
        """Stop polling or the webhook server, let replies in progress finish within `grace` seconds,
        then shut down.

        The webhook stays registered with Telegram: other processes behind the same URL keep serving
        it, and Telegram holds and retries updates while none does. Polling deletes it when started.
        A reply cut off here stays marked as pending and is reported to its user on the next start.
        """
        self.handlers.accepting = False
        updater = self.app.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.webhook is not None:
            await self.webhook.stop()
            self.webhook = None
        await finish_in_flight(self.platform, self.handlers.in_flight, grace)
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()


def _menu(names: Sequence[str], words: CommandMenu) -> list[BotCommand]:
    return [BotCommand(name, getattr(words, name)) for name in names]
