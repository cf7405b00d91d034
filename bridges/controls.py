"""Stop and Regenerate: the buttons a reply carries, and the replies that can still be stopped.

A control button names its action and the user the reply is for ("sc:stop:123"), never a payload
in the button store: it costs no database write, fits Discord's custom_id and Telegram's 64-byte
callback_data, and still parses after a restart (when there is nothing left to stop, the presser is
told so). The message it was pressed on says which reply is meant.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from agents.base import Button
from bridges.catalogue import Strings

PREFIX = "sc:"
CONTROL_KEY = "switchboard_control"
"""The payload key that marks a button as ours, not an agent's."""


class ControlNotices(Strings, key="controls"):
    """What the controls say; the stop mark ends a stopped reply's text, on screen and in the transcript."""

    stop_label = "Stop"
    regenerate_label = "Regenerate"
    stopped_mark = "(stopped)"
    stopped = "Stopped."
    nothing_to_stop = "Nothing is being written for you right now."
    already_finished = "This reply has already finished."
    stop_not_yours = "Only the person who asked, or a moderator, can stop this reply."
    regenerate_not_yours = "Only the person who asked can regenerate this reply."
    too_late = "Only the latest reply can be regenerated, and this one is no longer the latest."
    replaced_part = "(replaced by the new reply above)"
    """What an earlier reply's extra message says once a shorter new reply took its place."""
    regenerated = "regenerated a reply; it was: {text}"
    """The transcript's record of the text a regenerated reply replaced."""


class Control(StrEnum):
    STOP = "stop"
    REGENERATE = "regen"


CONTROL_DATA = re.compile(rf"^{re.escape(PREFIX)}({'|'.join(Control)}):(-?[0-9A-Za-z_]{{1,40}})$")


def control_button(action: Control, owner: str, say: ControlNotices) -> Button:
    """The button for `action` on a reply written for the user `owner`, labelled in their language."""
    label = say.stop_label if action is Control.STOP else say.regenerate_label
    return Button(label, {CONTROL_KEY: action.value, "owner": owner})


def control_data(button: Button) -> str | None:
    """The custom_id / callback_data of a control button, or None for an agent's button."""
    action = button.payload.get(CONTROL_KEY)
    return f"{PREFIX}{action}:{button.payload['owner']}" if action else None


def parse_control(data: str | None) -> tuple[Control, str] | None:
    """(action, owner) of a press of a control button, or None for anything else."""
    match = CONTROL_DATA.match(data or "")
    return (Control(match[1]), match[2]) if match else None


Key = tuple[str, str, str, str]
"""A conversation's place: (platform, chat id, thread id, user id)."""


@dataclass
class LiveReply:
    """A reply being written: `stop` is set to stop it; `message_ids` are the messages it posted."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    message_ids: set[str] = field(default_factory=set)


class RepliesInProgress:
    """The replies this process is writing, one at most per conversation (turns run one at a time)."""

    def __init__(self) -> None:
        self._live: dict[Key, LiveReply] = {}

    @contextmanager
    def writing(self, key: Key) -> Iterator[LiveReply]:
        reply = self._live[key] = LiveReply()
        try:
            yield reply
        finally:
            if self._live.get(key) is reply:
                del self._live[key]

    def stop(self, key: Key, message_id: str | None = None) -> bool:
        """Stop the reply being written in `key`'s conversation (only if it posted `message_id`, when
        given: a Stop button left on an older reply must not stop a newer one). False if none is."""
        reply = self._live.get(key)
        if reply is None or reply.stop.is_set():
            return False
        if message_id is not None and message_id not in reply.message_ids:
            return False
        reply.stop.set()
        return True
