"""A terminal bridge: type a message, watch the reply stream in.

On a terminal an "edit" redraws the reply in place; when output is piped, each edit prints only the new
text, so the stream is visible either way. Buttons are numbered: type the number to press one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, TextIO

from agents.base import Attachment, Button, Media
from bridges.budget import RateBudget
from bridges.console.config import ConsoleConfig
from bridges.controls import Control
from bridges.recovery import recover
from bridges.relay import Relay
from bridges.render import IN_PROGRESS
from bridges.surface import Inbound
from models import Conversation

log = logging.getLogger(__name__)

HELP = "Commands: /reset (new conversation), /human (ask for a moderator), /quit. A number presses a button."
PROMPT = "you> "
BOT_PREFIX = "bot> "


class Terminal:
    """Non-blocking line input and plain output for the console."""

    def __init__(self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.interactive = stdin.isatty() and stdout.isatty()
        self.redraws = stdout.isatty()
        self._reader: asyncio.StreamReader | None = None

    async def start(self) -> None:
        """Read through the event loop when stdin is a pipe or terminal; a regular file never blocks."""
        try:
            reader = asyncio.StreamReader()
            loop = asyncio.get_running_loop()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self.stdin)
            self._reader = reader
        except (ValueError, OSError):
            self._reader = None

    async def read_line(self) -> str | None:
        """The next line without its newline, or None at end of input."""
        if self.interactive:
            self.write(PROMPT)
        if self._reader is not None:
            raw = await self._reader.readline()
            return raw.decode("utf-8", errors="replace").rstrip("\r\n") if raw else None
        line = self.stdin.readline()
        return line.rstrip("\r\n") if line else None

    def close_input(self) -> None:
        """Make `read_line` return None, as at end of input (used for a graceful shutdown)."""
        if self._reader is not None:
            self._reader.feed_eof()
        else:
            self.stdin = io.StringIO()

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    @property
    def width(self) -> int:
        return shutil.get_terminal_size((80, 24)).columns


@dataclass
class _Printed:
    text: str
    rows: int


@dataclass
class ConsoleSurface:
    """The Surface for one terminal session."""

    terminal: Terminal
    edit_interval: float
    max_length: int = 4000
    budgets: Sequence[RateBudget] = ()
    edit_budgets: Sequence[RateBudget] = ()
    typing_budgets: Sequence[RateBudget] = ()
    offered: tuple[Button, ...] = ()
    control_buttons: ClassVar[frozenset[Control]] = frozenset()
    """A numbered button is typed back as a message: there is no press of a control to receive."""
    _printed: dict[str, _Printed] = field(default_factory=dict)
    _last_id: str = ""

    @staticmethod
    def measure(text: str) -> int:
        return len(text)

    async def send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        message_id = str(len(self._printed) + 1)
        self._print_new(message_id, self._compose(text, buttons))
        self._remember_buttons(buttons)
        return message_id

    async def edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        composed = self._compose(text, buttons)
        previous = self._printed[message_id]
        if message_id == self._last_id and self.terminal.redraws:
            self.terminal.write(f"\r\x1b[{previous.rows - 1}A\x1b[J" if previous.rows > 1 else "\r\x1b[J")
            self._print_new(message_id, composed, newline=False)
        elif message_id == self._last_id and composed.startswith(previous.text):
            self.terminal.write(composed[len(previous.text) :])
            self._printed[message_id] = _Printed(composed, 0)
        else:
            self._print_new(message_id, composed)
        self._remember_buttons(buttons)

    async def send_media(self, media: Media) -> str:
        caption = f" {media.caption}" if media.caption else ""
        return await self.send(f"[{media.kind}: {media.url}]{caption}")

    @property
    def max_upload(self) -> int:
        return 50 * 1024 * 1024

    async def send_file(self, file: Attachment, caption: str = "") -> str:
        return await self.send(f"[file: {file.name or file.kind}, {file.size} bytes] {caption}".rstrip())

    async def final_id(self, message_id: str) -> str:
        return message_id

    async def typing(self) -> None:
        return None

    def end_reply(self) -> None:
        """Leave the cursor on a fresh line once a reply is complete."""
        if self._last_id:
            self.terminal.write("\n")
            self._last_id = ""

    def _compose(self, text: str, buttons: Sequence[Button]) -> str:
        if not self.terminal.redraws:  # piped output cannot take the in-progress marker back
            text = text.removesuffix(IN_PROGRESS).rstrip()
        composed = BOT_PREFIX + text
        if buttons:
            composed += "\n" + "  ".join(f"[{n}] {button.label}" for n, button in enumerate(buttons, 1))
        return composed

    def _print_new(self, message_id: str, composed: str, *, newline: bool = True) -> None:
        if newline and self._last_id:
            self.terminal.write("\n")
        self.terminal.write(composed)
        width = max(self.terminal.width, 1)
        rows = sum(max(1, -(-len(line) // width)) for line in composed.split("\n"))
        self._printed[message_id] = _Printed(composed, rows)
        self._last_id = message_id

    def _remember_buttons(self, buttons: Sequence[Button]) -> None:
        if buttons:
            self.offered = tuple(buttons)


class ConsoleBridge:
    """One local user in this terminal; serves until end of input or /quit (`finished`)."""

    platform = "console"
    desk = None

    def __init__(self, config: ConsoleConfig, relay: Relay, *, terminal: Terminal | None = None) -> None:
        self.relay = relay
        self.user_id = config.user_id
        self.display_name = config.display_name
        self.terminal = terminal or Terminal()
        self.surface = ConsoleSurface(self.terminal, edit_interval=config.edit_interval)
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._serving = asyncio.create_task(self.run(), name="console")

    async def finished(self) -> None:
        if self._serving is not None:
            await asyncio.shield(self._serving)

    async def close(self, grace: float) -> None:
        """Take no more input; the reply in progress gets `grace` seconds, then is cut off (and reported
        on the next start)."""
        if self._serving is None or self._serving.done():
            return
        self.stop()
        try:
            await asyncio.wait_for(self._serving, grace)
        except TimeoutError:
            log.warning("replies still in progress were cut off; they are reported on the next start")

    def surface_for(self, platform: str, chat_id: str, thread_id: str) -> ConsoleSurface | None:
        return self.surface if platform == self.platform else None

    def jump_link(self, conversation: Conversation) -> str | None:
        return None

    def healthy(self) -> bool:
        return True

    async def run(self) -> None:
        """Serve one user until end of input or /quit."""
        await self.terminal.start()
        if self.terminal.interactive:
            self.terminal.write(HELP + "\n")
        if await recover(self.relay, self.surface_for):
            self.surface.end_reply()
        while (line := await self.terminal.read_line()) is not None:
            text = line.strip()
            if not text:
                continue
            if not self.terminal.interactive:
                self.terminal.write(f"{PROMPT}{text}\n")
            if text in {"/quit", "/exit"}:
                break
            await self._dispatch(text)
            self.surface.end_reply()

    def stop(self) -> None:
        """Take no new messages; `run` returns once the reply in progress is complete."""
        self.terminal.close_input()

    async def _dispatch(self, text: str) -> None:
        inbound = Inbound(
            platform=self.platform,
            chat_id="local",
            user_id=self.user_id,
            display_name=self.display_name,
            text=text,
            is_dm=True,
        )
        if text == "/help":
            self.terminal.write(HELP + "\n")
        elif text == "/reset":
            await self.relay.reset(inbound, self.surface)
        elif text == "/human":
            await self.relay.request_human(inbound, self.surface)
        elif text.isdigit() and 1 <= int(text) <= len(self.surface.offered):
            button = self.surface.offered[int(text) - 1]
            await self.relay.handle(replace(inbound, text=button.label, button=button), self.surface)
        else:
            await self.relay.handle(inbound, self.surface)
