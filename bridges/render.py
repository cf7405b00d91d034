"""The platform-neutral streaming renderer: agent events in, throttled sends and edits out.

One pump per reply owns every request for that reply, so at most one request is in flight per message
and the newest text always wins. The first text and every final text go out as soon as the shared
budgets allow; intermediate edits are paced by `edit_interval` and skipped while budgets are tight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.base import (
    AgentError,
    AgentEvent,
    AgentProtocolError,
    Button,
    Buttons,
    HandoffRequested,
    Media,
    Message,
    SessionEnded,
    Sources,
    TextDelta,
    TurnEnd,
)
from bridges.budget import acquire_all, try_acquire_all
from bridges.split import split_text
from bridges.surface import Surface, SurfaceError

log = logging.getLogger(__name__)

CHOOSE_PROMPT = "Please choose:"
TYPING_REFRESH_SECONDS = 4.0
IDLE_WAIT = 3600.0
TYPING_DELAY_SECONDS = 1.0
"""Typing shows only if the agent is still silent after this long. Most agents start within it, and
an early typing request would spend the chat's rate budget the first text then has to wait for."""


class RenderFailed(Exception):
    """The platform would not take the final text even after retries and a fresh message."""


@dataclass
class RenderResult:
    text: str = ""
    message_ids: list[str] = field(default_factory=list)
    provider_state: dict[str, Any] | None = None
    handoff: HandoffRequested | None = None
    session_ended: SessionEnded | None = None
    error: AgentError | None = None
    first_text_at: float | None = None
    """Clock reading when the first message of the reply was posted."""


@dataclass
class _Block:
    """One logical message of the reply: streamed text, a whole message, or a media item."""

    parts: list[str] = field(default_factory=list)
    closed: bool = False
    buttons: tuple[Button, ...] = ()
    media: Media | None = None
    _joined: str = ""
    _joined_parts: int = 0

    @property
    def text(self) -> str:
        if self._joined_parts != len(self.parts):
            self._joined = "".join(self.parts)
            self.parts[:] = [self._joined]
            self._joined_parts = 1
        return self._joined

    def replace(self, text: str) -> None:
        self.parts[:] = [text]
        self._joined, self._joined_parts = text, 1


@dataclass(frozen=True)
class _Target:
    text: str
    buttons: tuple[Button, ...]
    final: bool
    media: Media | None = None


@dataclass
class _Shown:
    message_id: str
    text: str
    buttons: tuple[Button, ...]
    last_request_at: float


class ReplyRenderer:
    def __init__(
        self,
        surface: Surface,
        *,
        final_attempts: int = 3,
        retry_delay: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        on_posted: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`on_posted` hears every new platform message id, so a crash mid-reply can be found later."""
        self.surface = surface
        self._on_posted = on_posted
        self.final_attempts = final_attempts
        self.retry_delay = retry_delay
        self._clock = clock
        self._blocks: list[_Block] = []
        self._shown: list[_Shown] = []
        self._changed = asyncio.Event()
        self._urgent = asyncio.Event()
        """Set for changes that cannot wait for the edit interval: a block closed, media, the end."""
        self._finished = False
        self._first_text = asyncio.Event()
        self._first_text_at: float | None = None

    async def render(self, events: AsyncIterable[AgentEvent]) -> RenderResult:
        """Consume the whole stream; agent failures end the reply with a notice instead of raising."""
        result = RenderResult()
        pump = asyncio.create_task(self._pump(), name="reply-pump")
        typing = asyncio.create_task(self._keep_typing(), name="reply-typing")
        try:
            try:
                async for event in events:
                    self._apply(event, result)
                    self._changed.set()
                    if not isinstance(event, TextDelta):
                        self._urgent.set()
                    if pump.done():
                        break  # the platform refused the text; stop pulling from the agent
            except AgentError as exc:
                result.error = exc
                self._add_notice(exc.user_message)
            except Exception as exc:
                log.exception("agent stream crashed")
                result.error = AgentProtocolError(f"agent stream crashed: {type(exc).__name__}")
                self._add_notice(result.error.user_message)
            self._finished = True
            self._changed.set()
            self._urgent.set()
            await pump
        finally:
            typing.cancel()
            pump.cancel()
        result.text = "\n\n".join(block.text.strip() for block in self._blocks if block.media is None).strip()
        result.message_ids = [shown.message_id for shown in self._shown]
        result.first_text_at = self._first_text_at
        return result

    def _apply(self, event: AgentEvent, result: RenderResult) -> None:
        match event:
            case TextDelta(text=text):
                self._open_block().parts.append(text)
            case Message(text=text, buttons=buttons, media=media):
                self._close_open_block()
                if text.strip() or buttons:
                    self._blocks.append(_Block([text or CHOOSE_PROMPT], closed=True, buttons=buttons))
                for item in media:
                    self._blocks.append(_Block(closed=True, media=item))
            case Buttons(buttons=buttons):
                self._attach_buttons(buttons)
            case Media() as media:
                self._close_open_block()
                self._blocks.append(_Block(closed=True, media=media))
            case Sources(urls=urls) if urls:
                self._close_open_block()
                self._blocks.append(
                    _Block(["Sources: " + " · ".join(f"<{url}>" for url in urls)], closed=True)
                )
            case HandoffRequested() as handoff:
                result.handoff = handoff
            case SessionEnded() as ended:
                result.session_ended = ended
            case TurnEnd(provider_state=state):
                result.provider_state = dict(state)
            case _:
                log.warning("renderer ignored an unknown event %r", type(event).__name__)

    def _open_block(self) -> _Block:
        if not self._blocks or self._blocks[-1].closed:
            self._blocks.append(_Block())
        return self._blocks[-1]

    def _close_open_block(self) -> None:
        if self._blocks and not self._blocks[-1].closed:
            self._blocks[-1].closed = True

    def _attach_buttons(self, buttons: tuple[Button, ...]) -> None:
        self._close_open_block()
        text_blocks = [block for block in self._blocks if block.media is None and block.text.strip()]
        if text_blocks and text_blocks[-1] is self._blocks[-1]:
            text_blocks[-1].buttons += buttons
        else:
            self._blocks.append(_Block([CHOOSE_PROMPT], closed=True, buttons=buttons))

    def _add_notice(self, notice: str) -> None:
        block = self._open_block()
        shown = block.text.rstrip()
        block.replace((shown + "\n\n" if shown else "") + f"⚠️ {notice}")
        block.closed = True

    def _targets(self) -> list[_Target]:
        """What every platform message of this reply should show right now."""
        targets: list[_Target] = []
        for block in self._blocks:
            if block.media is not None:
                targets.append(_Target("", (), True, block.media))
                continue
            chunks = [
                c for c in split_text(block.text, self.surface.max_length, self.surface.measure) if c.strip()
            ]
            for index, chunk in enumerate(chunks):
                last = index == len(chunks) - 1
                final = block.closed or self._finished or not last
                targets.append(_Target(chunk.strip(), block.buttons if last and final else (), final))
        return targets

    async def _pump(self) -> None:
        """Bring the platform messages towards the text, one request at a time. While an edit waits for
        its interval, more text changes nothing, so only urgent changes wake the pump early: at
        hundreds of replies streaming at once, waking on every chunk would cost the bridge its CPU."""
        while True:
            self._changed.clear()
            self._urgent.clear()
            targets = self._targets()
            if self._finished and self._in_sync(targets):
                return
            wait = await self._step(targets)
            if wait is None:
                continue
            woken_by = self._changed if wait >= IDLE_WAIT else self._urgent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken_by.wait(), timeout=wait)

    def _in_sync(self, targets: Sequence[_Target]) -> bool:
        return len(self._shown) == len(targets) and all(
            target.media is not None or (shown.text == target.text and shown.buttons == target.buttons)
            for shown, target in zip(self._shown, targets, strict=True)
        )

    async def _step(self, targets: Sequence[_Target]) -> float | None:
        """Make one request towards `targets`. Return None if one was made, else how long to wait."""
        for index, target in enumerate(targets):
            if index >= len(self._shown):
                await self._send(target)
                return None
            shown = self._shown[index]
            if target.media is not None or (shown.text == target.text and shown.buttons == target.buttons):
                continue
            if target.final:
                await self._edit_final(index, target)
                return None
            due = shown.last_request_at + self.surface.edit_interval - self._clock()
            if due > 0:
                return due
            if not try_acquire_all(self.surface.budgets):
                return max(self.surface.edit_interval / 4, 0.05)
            await self._edit_intermediate(shown, target)
            return None
        return IDLE_WAIT  # nothing to do until the stream changes

    async def _send(self, target: _Target) -> None:
        for attempt in range(1, self.final_attempts + 1):
            # The reply's first words go ahead of other replies' queued edits.
            await acquire_all(self.surface.budgets, urgent=not self._shown)
            started = self._clock()
            try:
                if target.media is not None:
                    message_id = await self.surface.send_media(target.media)
                else:
                    message_id = await self.surface.send(target.text, target.buttons)
            except SurfaceError as exc:
                log.warning("send failed (attempt %d/%d): %s", attempt, self.final_attempts, exc)
                if exc.permanent or attempt == self.final_attempts:
                    raise RenderFailed(f"could not send a message: {exc}") from exc
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                continue
            self._shown.append(_Shown(message_id, target.text, target.buttons, started))
            if self._first_text_at is None:
                self._first_text_at = self._clock()
            self._first_text.set()
            await self._posted(message_id)
            return

    async def _edit_intermediate(self, shown: _Shown, target: _Target) -> None:
        shown.last_request_at = self._clock()
        try:
            await self.surface.edit(shown.message_id, target.text)
        except SurfaceError as exc:
            log.warning("intermediate edit failed, the next one carries newer text: %s", exc)
            return
        shown.text, shown.buttons = target.text, target.buttons

    async def _edit_final(self, index: int, target: _Target) -> None:
        """Final text must land: retry, and if the message cannot be edited, post it anew."""
        shown = self._shown[index]
        for attempt in range(1, self.final_attempts + 1):
            await acquire_all(self.surface.budgets)
            shown.last_request_at = self._clock()
            try:
                await self.surface.edit(shown.message_id, target.text, target.buttons)
            except SurfaceError as exc:
                log.warning("final edit failed (attempt %d/%d): %s", attempt, self.final_attempts, exc)
                if exc.permanent:
                    break
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                continue
            shown.text, shown.buttons = target.text, target.buttons
            return
        await acquire_all(self.surface.budgets)
        try:
            message_id = await self.surface.send(target.text, target.buttons)
        except SurfaceError as exc:
            raise RenderFailed(f"could not deliver the final text: {exc}") from exc
        self._shown[index] = _Shown(message_id, target.text, target.buttons, self._clock())
        await self._posted(message_id)

    async def _posted(self, message_id: str) -> None:
        if self._on_posted is not None:
            await self._on_posted(message_id)

    async def _keep_typing(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_text.wait(), timeout=TYPING_DELAY_SECONDS)
        while not self._first_text.is_set():
            if try_acquire_all(self.surface.budgets):  # nice to have: never queued ahead of real text
                try:
                    await self.surface.typing()
                except SurfaceError as exc:
                    log.debug("typing indicator failed: %s", exc)
            try:
                await asyncio.wait_for(self._first_text.wait(), timeout=TYPING_REFRESH_SECONDS)
            except TimeoutError:
                pass
