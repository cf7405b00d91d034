"""Every platform Switchboard can serve, one line each; a platform's code is imported only when used.

`config` and `bridge` name a class as "module:Class". The config module must stay light (pydantic only),
since settings import it to validate the platform's section; the bridge module pulls in the platform's
client library and is imported only when the bridge is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridges.base import Bridge, PlatformConfig
    from bridges.relay import Relay


@dataclass(frozen=True)
class Platform:
    name: str
    config: str
    bridge: str
    binding_scopes: tuple[str, ...] = ()
    """Where `/agent` or `[[routing.bindings]]` can choose the agent on this platform, most specific first."""
    blockable: bool = True
    """Whether its users can be blocked (a local console user cannot)."""
    fallback: bool = False
    """Served when no other platform is configured (the console), and only then."""


PLATFORMS = {
    platform.name: platform
    for platform in (
        Platform(
            "discord",
            "bridges.discord.config:DiscordConfig",
            "bridges.discord.bridge:DiscordBridge",
            ("discord_channel", "discord_guild"),
        ),
        Platform(
            "telegram",
            "bridges.telegram.config:TelegramConfig",
            "bridges.telegram.bridge:TelegramBridge",
            ("telegram_chat",),
        ),
        Platform(
            "console",
            "bridges.console.config:ConsoleConfig",
            "bridges.console.bridge:ConsoleBridge",
            blockable=False,
            fallback=True,
        ),
    )
}

GLOBAL_SCOPE = "global"


def binding_scopes() -> tuple[str, ...]:
    return (GLOBAL_SCOPE, *(scope for p in PLATFORMS.values() for scope in p.binding_scopes))


def known_scope(value: str) -> str:
    """`value` if it is a binding scope (for validating configuration); else a ValueError naming them."""
    if value not in binding_scopes():
        raise ValueError(f"unknown scope (known: {', '.join(binding_scopes())})")
    return value


def blockable() -> tuple[str, ...]:
    return tuple(name for name, platform in PLATFORMS.items() if platform.blockable)


def config_class(name: str) -> type[PlatformConfig]:
    found: type[PlatformConfig] = _load(PLATFORMS[name].config)
    return found


def build_bridge(name: str, config: PlatformConfig, relay: Relay) -> Bridge:
    bridge: Bridge = _load(PLATFORMS[name].bridge)(config, relay)
    return bridge


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
