"""Live configuration: on SIGHUP (or `bot.py reload`) re-read the config file and hand each running part
its new settings, between two awaits, so no reply in progress notices. A file that does not load or
validate is rejected with one log line and the running config stays.

What a running process cannot take over without a restart (the database, the agents, the platforms'
connections and tokens, the ops listener, logging) is compared and named in a warning, never applied
half-way; everything else (bindings, limits, the handoff desk's rules, and any part that subscribes)
takes effect for the next message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from settings import ConfigError, Settings, load_settings

log = logging.getLogger(__name__)

RESTART_ONLY = ("database", "agents", "ops", "logging")
"""Sections read once at start; the platforms' own sections are restart-only too."""

Apply = Callable[[Settings], None]
"""Takes the new settings; must not await, so a reload is one step for every task in the loop."""


class LiveConfig:
    def __init__(
        self,
        current: Settings,
        path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.current = current
        self._path = path
        self._environ = environ
        self._parts: list[Apply] = []

    def on_change(self, apply: Apply) -> None:
        """Register a running part that takes its new settings on every accepted reload."""
        self._parts.append(apply)

    def reload(self) -> bool:
        """Re-read and apply. Never raises: a bad file is logged in one line and changes nothing."""
        try:
            new = load_settings(self._path, self._environ)
        except ConfigError as exc:
            log.error("config reload rejected, the running config stays: %s", exc)
            return False
        try:
            for apply in self._parts:
                apply(new)
        except ValueError as exc:  # e.g. a default agent that is not running
            log.error("config reload rejected, the running config stays: %s", exc)
            for apply in self._parts:  # parts take whole settings, so the old ones undo a partial apply
                apply(self.current)
            return False
        stale = restart_only_changes(self.current, new)
        self.current = new
        if stale:
            log.warning("config reloaded; %s changed and take effect only after a restart", ", ".join(stale))
        else:
            log.info("config reloaded")
        return True


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """The restart-only sections whose values differ between `old` and `new`."""
    sections = [*RESTART_ONLY, *{*old.platforms(), *new.platforms()}]
    return [name for name in sections if _section(old, name) != _section(new, name)]


def _section(settings: Settings, name: str) -> Any:
    """Comparable values (secrets compare by value, so a new token counts as a change; never logged)."""
    value = getattr(settings, name, None)
    if isinstance(value, Mapping):
        return {key: item.model_dump() for key, item in value.items()}
    return None if value is None else value.model_dump()
