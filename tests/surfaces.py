"""A recording `Surface` for renderer and relay tests: what a user would see, and every request made."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.base import Attachment, Button, Media
from bridges.budget import RateBudget
from bridges.controls import Control
from bridges.split import Measure
from bridges.surface import SurfaceError


@dataclass(frozen=True)
class Request:
    kind: str  # "send" | "edit" | "media" | "typing"
    message_id: str
    text: str
    buttons: tuple[Button, ...]
    at: float


@dataclass
class _Posted:
    text: str
    buttons: tuple[Button, ...] = ()
    media: Media | None = None
    versions: list[str] = field(default_factory=list)


class RecordingSurface:
    """Keeps every message's current and past text; can add latency and fail chosen requests."""

    control_buttons = frozenset(Control)

    def __init__(
        self,
        *,
        max_length: int = 2000,
        measure: Measure = len,
        edit_interval: float = 0.05,
        budgets: Sequence[RateBudget] = (),
        edit_budgets: Sequence[RateBudget] | None = None,
        typing_budgets: Sequence[RateBudget] | None = None,
        latency: float = 0.0,
    ) -> None:
        """Edits and typing spend from `budgets` unless given budgets of their own."""
        self.max_length = max_length
        self.measure = measure
        self.edit_interval = edit_interval
        self.budgets = budgets
        self.edit_budgets = budgets if edit_budgets is None else edit_budgets
        self.typing_budgets = budgets if typing_budgets is None else typing_budgets
        self.latency = latency
        self.requests: list[Request] = []
        self.posted: dict[str, _Posted] = {}
        self._failures: dict[str, list[SurfaceError]] = defaultdict(list)
        self._in_flight: set[str] = set()
        self.overlaps = 0
        """Requests that touched a message while another request for it was still in flight."""
        self.changed = asyncio.Condition()

    def fail_next(self, kind: str, error: SurfaceError, times: int = 1) -> None:
        """Make the next `times` requests of `kind` ("send", "edit", "media", "typing") raise `error`."""
        self._failures[kind].extend([error] * times)

    async def _request(self, kind: str, message_id: str, text: str, buttons: Sequence[Button]) -> None:
        if message_id in self._in_flight:
            self.overlaps += 1
        self._in_flight.add(message_id)
        try:
            self.requests.append(Request(kind, message_id, text, tuple(buttons), time.monotonic()))
            if self.latency:
                await asyncio.sleep(self.latency)
            if self._failures[kind]:
                raise self._failures[kind].pop(0)
            if kind == "edit":
                if message_id not in self.posted:
                    raise SurfaceError(f"unknown message {message_id}", permanent=True)
                if self.measure(text) > self.max_length:
                    raise SurfaceError("message too long", permanent=True)
        finally:
            self._in_flight.discard(message_id)

    async def _changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        message_id = f"m{len(self.posted) + 1}"
        if self.measure(text) > self.max_length:
            raise SurfaceError("message too long", permanent=True)
        await self._request("send", message_id, text, buttons)
        self.posted[message_id] = _Posted(text, tuple(buttons), versions=[text])
        await self._changed()
        return message_id

    async def edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        await self._request("edit", message_id, text, buttons)
        posted = self.posted[message_id]
        posted.text, posted.buttons = text, tuple(buttons)
        posted.versions.append(text)
        await self._changed()

    async def send_media(self, media: Media) -> str:
        message_id = f"m{len(self.posted) + 1}"
        await self._request("media", message_id, media.url, ())
        self.posted[message_id] = _Posted("", media=media)
        await self._changed()
        return message_id

    max_upload = 10 * 1024 * 1024

    async def send_file(self, file: Attachment, caption: str = "") -> str:
        message_id = f"m{len(self.posted) + 1}"
        await self._request("file", message_id, file.name, ())
        self.posted[message_id] = _Posted(caption)
        await self._changed()
        return message_id

    async def final_id(self, message_id: str) -> str:
        return message_id

    async def typing(self) -> None:
        await self._request("typing", "", "", ())
        await self._changed()

    def visible_texts(self) -> list[str]:
        """The text messages as the user sees them now, oldest first."""
        return [posted.text for posted in self.posted.values() if posted.media is None]

    def visible_buttons(self) -> list[tuple[Button, ...]]:
        return [posted.buttons for posted in self.posted.values() if posted.media is None]

    def visible_media(self) -> list[Media]:
        return [posted.media for posted in self.posted.values() if posted.media is not None]

    def count(self, kind: str) -> int:
        return sum(1 for request in self.requests if request.kind == kind)

    async def wait_for(self, predicate: object, within: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking whenever a message changes."""
        assert callable(predicate)
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)
