"""The platform-neutral streaming renderer: agent events in, throttled sends and edits out.

One pump per reply owns every request for that reply, so at most one request is in flight per message
and the newest text always wins. The first text and every final text go out as soon as the shared
budgets allow, with the text there is when the slot comes (so a reply that waited past the end of the
stream goes out whole, in one request); intermediate edits are paced by `edit_interval` and skipped
while budgets are tight. While a request waits for a slot, the chat shows typing; a message whose text
is still streaming ends in the `IN_PROGRESS` marker, which its final edit removes.

`ReplyControls` let the user stop a reply (its stream is closed, the text kept and marked stopped) and
offer to regenerate it: their buttons ride on requests the reply makes anyway, never on one of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
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
    Rewind,
    SessionEnded,
    Sources,
    TextDelta,
    TurnEnd,
    Usage,
)
from bridges.budget import RateBudget, acquire_all, try_acquire_all
from bridges.controls import ControlNotices
from bridges.split import Measure, natural_end, split_text
from bridges.surface import Surface, SurfaceError

log = logging.getLogger(__name__)

IN_PROGRESS = "▌"
"""Ends a message whose text is still streaming, so a reader sees more is coming; the final edit drops
it, leaving exactly the agent's text. A block cursor, because agent text does not end in one (an
ellipsis could be the agent's own)."""

FINAL_RESERVE = 1
"""Edit slots intermediate edits leave free, so the final text never waits for the window to roll."""

CHOOSE_PROMPT = "Please choose:"
TYPING_REFRESH_SECONDS = 4.0
IDLE_WAIT = 3600.0
MAX_REPLY_CHARS = 20_000
"""Default cap on the agent's text in one reply: a runaway agent must not cost the bot its CPU or the chat
a wall of messages."""
TYPING_DELAY_SECONDS = 1.0
"""Typing shows only if nothing is visible after this long: most replies show text within it, and a
typing request for each of them would be wasted."""


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
    cut: bool = False
    """The agent's text passed the renderer's `max_chars`: the reply ends early, on the text shown."""
    stopped: bool = False
    """Someone stopped the reply (its user, or a moderator taking over): its stream was closed and its
    text ends in the stop mark."""
    usage: Usage | None = None
    """The tokens the provider said the turn cost, if it said."""


@dataclass(frozen=True)
class ReplyControls:
    """What the user can do to a reply: stop it while it streams, regenerate it once it is over."""

    stop: asyncio.Event | None = None
    """Set to stop the reply: the stream is closed, the text so far kept and marked stopped."""
    stop_button: Button | None = None
    """Rides on the message still streaming (its first send and edits carry it anyway, so it costs no
    request); the message's final edit drops it."""
    regenerate_button: Button | None = None
    """On the reply's last message, with its final text, when the reply ended without an error."""
    stopped_mark: str = ControlNotices.stopped_mark
    """What ends a stopped reply's text, in the user's language."""


@dataclass
class _Block:
    """One logical message of the reply: streamed text, a whole message, or a media item.

    Text that has filled a platform message moves from `tail` into `full` and never changes again (a
    full chunk's cut never moves), so each step re-examines only `tail`, the message still growing, and
    rendering stays linear in the length of the reply."""

    closed: bool = False
    buttons: tuple[Button, ...] = ()
    media: Media | None = None
    full: list[str] = field(default_factory=list)
    """Chunks that filled a message, as split."""
    tail: str = ""
    """The text after `full`, once `settle` has taken in what arrived."""
    taken: int = 0
    """How many of `full` the renderer has turned into targets that can no longer change."""
    blank: bool = True
    """Nothing but whitespace so far."""
    _arrived: list[str] = field(default_factory=list)

    def append(self, text: str) -> None:
        self._arrived.append(text)
        self.blank = self.blank and not text.strip()

    def settle(self, limit: int, measure: Measure) -> None:
        """Take in the text that arrived and move every chunk that fills a message into `full`."""
        if not self._arrived:
            return  # `tail` was split when it last changed
        self.tail += "".join(self._arrived)
        self._arrived.clear()
        *done, self.tail = split_text(self.tail, limit, measure)
        self.full += done

    @property
    def text(self) -> str:
        return "".join([*self.full, self.tail, *self._arrived])


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
        max_chars: int = MAX_REPLY_CHARS,
        final_attempts: int = 3,
        retry_delay: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        on_posted: Callable[[str], Awaitable[None]] | None = None,
        controls: ReplyControls = ReplyControls(),
    ) -> None:
        """`max_chars` caps the agent's text in a reply; `on_posted` hears every new platform message id,
        so a crash mid-reply can be found later."""
        self.surface = surface
        self.controls = controls
        self._streaming_buttons = (controls.stop_button,) if controls.stop_button else ()
        """What a message still streaming carries: none once the reply is stopped or over."""
        self._closing_buttons: tuple[Button, ...] = ()
        """What the reply's last message gets with its final text."""
        self.max_chars = max_chars
        self._on_posted = on_posted
        self.final_attempts = final_attempts
        self.retry_delay = retry_delay
        self._clock = clock
        self._blocks: list[_Block] = []
        self._chars = 0
        """Characters of agent text taken into the reply so far."""
        self._cut = False
        self._fixed: list[_Target] = []
        """Targets that can no longer change: every block but the last, and its messages already full."""
        self._fixed_blocks = 0
        """How many leading blocks are wholly in `_fixed`."""
        self._shown: list[_Shown] = []
        self._settled = 0
        """How many leading messages show their fixed target: the pump never looks at them again."""
        self._changed = asyncio.Event()
        self._urgent = asyncio.Event()
        """Set for changes that cannot wait for the edit interval: a block closed, media, the end."""
        self._finished = False
        self._first_text = asyncio.Event()
        self._first_text_at: float | None = None
        self._queued = False
        """A request of this reply is waiting for a slot in the shared budgets."""
        self._queued_event = asyncio.Event()

    async def render(self, events: AsyncIterable[AgentEvent]) -> RenderResult:
        """Consume the stream up to `max_chars`, or until the user stops it; agent failures end the reply
        with a notice instead of raising. A stream left early (too long, stopped, or the platform refused
        the text) is closed, so the provider's connection is released at once."""
        result = RenderResult()
        pump = asyncio.create_task(self._pump(), name="reply-pump")
        typing = asyncio.create_task(self._keep_typing(), name="reply-typing")
        stream = aiter(events)
        consume = asyncio.create_task(self._consume(stream, result, pump), name="reply-stream")
        stop = self.controls.stop
        stopped = asyncio.create_task(stop.wait(), name="reply-stop") if stop is not None else None
        try:
            waited = [task for task in (consume, stopped) if task is not None]
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if not consume.done():  # stopped: the stream's pending read is cancelled, its request with it
                consume.cancel()
                self._mark_stopped(result)
            self._closing_buttons = self._final_buttons(result)
            self._streaming_buttons = ()
            self._finished = True
            self._changed.set()
            self._urgent.set()
            await asyncio.wait([consume])  # a stopped consumer ends cancelled: that is no error here
            if not consume.cancelled():
                consume.result()
            await _close(stream)
            await pump
        finally:
            for task in (typing, pump, consume, stopped):
                if task is not None:
                    task.cancel()
        result.text = "\n\n".join(block.text.strip() for block in self._blocks if block.media is None).strip()
        result.message_ids = [await self._final_id(shown.message_id) for shown in self._shown]
        result.first_text_at = self._first_text_at
        result.cut = self._cut
        return result

    async def _consume(
        self, stream: AsyncIterator[AgentEvent], result: RenderResult, pump: asyncio.Task[None]
    ) -> None:
        try:
            async for event in stream:
                self._apply(event, result)
                self._changed.set()
                if self._cut or not isinstance(event, TextDelta):
                    self._urgent.set()
                if self._cut or pump.done():  # pump done: the platform refused the text
                    break
        except AgentError as exc:
            result.error = exc
            result.provider_state = exc.provider_state or result.provider_state
            self._add_notice(exc.user_message)
        except Exception as exc:
            log.exception("agent stream crashed")
            result.error = AgentProtocolError(f"agent stream crashed: {type(exc).__name__}")
            self._add_notice(result.error.user_message)

    def _mark_stopped(self, result: RenderResult) -> None:
        """End the text shown so far with the stop mark (a message of its own if there is no text)."""
        result.stopped = True
        block = self._blocks[-1] if self._blocks else None
        if block is None or block.media is not None:
            block = _Block()
            self._blocks.append(block)
        self._settle(block)
        block.tail = block.tail.rstrip()
        block.append(("" if block.blank else " ") + self.controls.stopped_mark)
        block.closed = True

    def _final_buttons(self, result: RenderResult) -> tuple[Button, ...]:
        button = self.controls.regenerate_button
        ended_well = result.error is None and result.handoff is None and result.session_ended is None
        return (button,) if button is not None and ended_well else ()

    def _apply(self, event: AgentEvent, result: RenderResult) -> None:
        match event:
            case TextDelta(text=text):
                self._add_text(self._open_block(), text)
            case Rewind(chars=chars):
                self._rewind(chars)
            case Message(text=text, buttons=buttons, media=media):
                self._close_open_block()
                if text.strip() or buttons:
                    self._add_block(text or CHOOSE_PROMPT, buttons)
                for item in () if self._cut else media:
                    self._blocks.append(_Block(closed=True, media=item))
            case Buttons(buttons=buttons):
                self._attach_buttons(buttons)
            case Media() as media:
                self._close_open_block()
                self._blocks.append(_Block(closed=True, media=media))
            case Sources(urls=urls) if urls:
                self._close_open_block()
                self._add_block("Sources: " + " · ".join(f"<{url}>" for url in urls))
            case HandoffRequested() as handoff:
                result.handoff = handoff
            case SessionEnded() as ended:
                result.session_ended = ended
            case TurnEnd(provider_state=state, usage=usage):
                result.provider_state = dict(state)
                result.usage = usage
            case _:
                log.warning("renderer ignored an unknown event %r", type(event).__name__)

    def _add_text(self, block: _Block, text: str) -> None:
        """Add agent text to `block`, up to `max_chars` in the whole reply. The text that passes the cap
        is dropped and the block ends at the last natural boundary before it."""
        room = self.max_chars - self._chars
        if len(text) <= room:
            self._chars += len(text)
            block.append(text)
            return
        self._chars, self._cut = self.max_chars, True
        block.append(text[:room])
        self._settle(block)
        block.tail = block.tail[: natural_end(block.tail + text[room : room + 1], len(block.tail))]
        block.closed = True

    def _rewind(self, chars: int) -> None:
        """Take back the end of the message being streamed, which the agent is about to send again.
        Text that already filled a platform message of its own stays; the replay then repeats it."""
        block = self._blocks[-1] if self._blocks else None
        if block is None or block.closed or block.media is not None:
            log.warning("renderer ignored a rewind: no message is being streamed")
            return
        self._settle(block)
        if chars > len(block.tail):
            log.warning("renderer cannot take back %d characters already sent in full messages", chars)
            return
        block.tail = block.tail[: len(block.tail) - chars]
        block.blank = not block.text.strip()
        self._chars -= chars

    def _add_block(self, text: str, buttons: tuple[Button, ...] = ()) -> None:
        """A message of its own: a whole message, sources, or the prompt that carries buttons."""
        block = _Block(closed=True, buttons=buttons)
        self._blocks.append(block)
        self._add_text(block, text)

    def _open_block(self) -> _Block:
        if not self._blocks or self._blocks[-1].closed:
            self._blocks.append(_Block())
        return self._blocks[-1]

    def _close_open_block(self) -> None:
        if self._blocks and not self._blocks[-1].closed:
            self._blocks[-1].closed = True

    def _attach_buttons(self, buttons: tuple[Button, ...]) -> None:
        """On the last message if it is text, else on a prompt of their own."""
        self._close_open_block()
        last = self._blocks[-1] if self._blocks else None
        if last is not None and last.media is None and not last.blank:
            last.buttons += buttons
        else:
            self._add_block(CHOOSE_PROMPT, buttons)

    def _add_notice(self, notice: str) -> None:
        block = self._open_block()
        self._settle(block)
        block.tail = block.tail.rstrip() + ("" if block.blank else "\n\n")
        block.append(f"⚠️ {notice}")
        block.closed = True

    def _in_progress(self, text: str) -> str:
        """`text` with the in-progress marker, unless the marker would not fit in the message (the
        text then fills it, and its next words go in a message of their own). After a code fence the
        marker goes on a line of its own: on the fence's line it would break the fence."""
        last_line = text[text.rfind("\n") + 1 :].lstrip()
        gap = "\n" if last_line.startswith(("```", "~~~")) else " "
        marked = f"{text}{gap}{IN_PROGRESS}"
        return marked if self.surface.measure(marked) <= self.surface.max_length else text

    def _settle(self, block: _Block) -> None:
        block.settle(self.surface.max_length, self.surface.measure)

    def _live_targets(self) -> list[_Target]:
        """Fold what can no longer change into `_fixed`, and return the targets after it: what the
        platform messages following the fixed ones should show right now."""
        while len(self._blocks) - self._fixed_blocks > 1:  # a block followed by another is done
            self._fixed += self._block_targets(self._blocks[self._fixed_blocks], last=False)
            self._fixed_blocks += 1
        if self._fixed_blocks == len(self._blocks):
            return []
        return self._block_targets(self._blocks[-1], last=True)

    def _block_targets(self, block: _Block, *, last: bool) -> list[_Target]:
        """The targets of `block` not yet fixed. In the last block, only the final message may still
        change (more text, buttons, the end of the reply); the full messages before it are fixed here."""
        if block.media is not None:
            return [_Target("", (), True, block.media)]
        self._settle(block)
        chunks = [
            (index, chunk.strip())
            for index, chunk in enumerate([*block.full[block.taken :], block.tail], block.taken)
            if chunk.strip()
        ]
        final = not last or block.closed or self._finished
        targets = [_Target(text, (), True) for _, text in chunks[:-1]]
        if chunks:
            text = chunks[-1][1]
            if final:
                closing = self._closing_buttons if last and self._finished else ()
                targets.append(_Target(text, block.buttons + closing, True))
            else:
                targets.append(_Target(self._in_progress(text), self._streaming_buttons, False))
        if not last:
            return targets
        self._fixed += targets[:-1]
        block.taken = chunks[-1][0] if chunks else len(block.full)
        return targets[-1:]

    async def _final_id(self, message_id: str) -> str:
        """The id the transcript keeps for a message of this reply (a draft's real message)."""
        try:
            return await self.surface.final_id(message_id)
        except SurfaceError as exc:  # the draft stays shown; only a later press on it will not match
            log.warning("could not post a finished draft: %s", exc)
            return message_id

    async def _pump(self) -> None:
        """Bring the platform messages towards the text, one request at a time. While an edit waits for
        its interval, more text changes nothing, so only urgent changes wake the pump early: at
        hundreds of replies streaming at once, waking on every chunk would cost the bridge its CPU."""
        while True:
            self._changed.clear()
            self._urgent.clear()
            live = self._live_targets()
            if self._finished and self._in_sync(live):
                return
            wait = await self._step(live)
            if wait is None:
                continue
            woken_by = self._changed if wait >= IDLE_WAIT else self._urgent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken_by.wait(), timeout=wait)

    def _target(self, index: int, live: Sequence[_Target]) -> _Target:
        fixed = len(self._fixed)
        return self._fixed[index] if index < fixed else live[index - fixed]

    def _in_sync(self, live: Sequence[_Target]) -> bool:
        return len(self._shown) == len(self._fixed) + len(live) and all(
            _shows(self._shown[index], self._target(index, live))
            for index in range(self._settled, len(self._shown))
        )

    async def _step(self, live: Sequence[_Target]) -> float | None:
        """Make one request towards the targets. Return None if one was made, else how long to wait."""
        for index in range(self._settled, len(self._fixed) + len(live)):
            target = self._target(index, live)
            if index >= len(self._shown):
                await self._send(index)
                return None
            shown = self._shown[index]
            if _shows(shown, target):
                if index == self._settled and index < len(self._fixed):
                    self._settled += 1
                continue
            if target.final:
                await self._edit_final(index, target)
                return None
            due = shown.last_request_at + self.surface.edit_interval - self._clock()
            if due > 0:
                return due
            if not try_acquire_all(self.surface.edit_budgets, reserve=FINAL_RESERVE):
                return max(self.surface.edit_interval / 4, 0.05)
            await self._edit_intermediate(shown, target)
            return None
        return IDLE_WAIT  # nothing to do until the stream changes

    async def _slot(self, budgets: Sequence[RateBudget], *, urgent: bool = False) -> None:
        """Wait for a request's slot, showing typing meanwhile if the wait is not over at once."""
        if try_acquire_all(budgets):
            return
        self._queued = True
        self._queued_event.set()
        try:
            await acquire_all(budgets, urgent=urgent)
        finally:
            self._queued = False

    def _current(self, index: int) -> _Target | None:
        """The target of message `index` now: text is composed when its request goes out, not when
        the request starts waiting. None if a rewind took the message back meanwhile."""
        live = self._live_targets()
        return self._target(index, live) if index < len(self._fixed) + len(live) else None

    async def _send(self, index: int) -> None:
        for attempt in range(1, self.final_attempts + 1):
            # The reply's first words go ahead of other replies' queued edits.
            await self._slot(self.surface.budgets, urgent=not self._shown)
            target = self._current(index)
            if target is None:
                return
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
            await self.surface.edit(shown.message_id, target.text, target.buttons)
        except SurfaceError as exc:
            log.warning("intermediate edit failed, the next one carries newer text: %s", exc)
            return
        shown.text, shown.buttons = target.text, target.buttons

    async def _edit_final(self, index: int, target: _Target) -> None:
        """Final text must land: retry, and if the message cannot be edited, post it anew."""
        shown = self._shown[index]
        for attempt in range(1, self.final_attempts + 1):
            await self._slot(self.surface.edit_budgets)
            shown.last_request_at = self._clock()
            try:
                await self.surface.edit(shown.message_id, target.text, target.buttons, final=True)
            except SurfaceError as exc:
                log.warning("final edit failed (attempt %d/%d): %s", attempt, self.final_attempts, exc)
                if exc.permanent:
                    break
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                continue
            shown.text, shown.buttons = target.text, target.buttons
            return
        await self._slot(self.surface.budgets)
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
        """Show typing while the user cannot see that more is coming: before the first text, and
        whenever a request waits for a slot. Typing spends from its own budgets, never text's."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_text.wait(), timeout=TYPING_DELAY_SECONDS)
        while True:
            self._queued_event.clear()
            if (self._queued or not self._first_text.is_set()) and try_acquire_all(
                self.surface.typing_budgets
            ):
                try:
                    await self.surface.typing()
                except SurfaceError as exc:
                    log.debug("typing indicator failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queued_event.wait(), timeout=TYPING_REFRESH_SECONDS)


def _shows(shown: _Shown, target: _Target) -> bool:
    return target.media is not None or (shown.text == target.text and shown.buttons == target.buttons)


async def _close(stream: AsyncIterator[AgentEvent]) -> None:
    """Close an agent stream left before its end (an async generator; a plain iterator has nothing to
    close). The agent's own cleanup failing must not cost the user the reply."""
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.warning("closing the agent stream failed", exc_info=True)
