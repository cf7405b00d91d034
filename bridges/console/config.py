"""The `[console]` section: who you are in the terminal, and how often a reply is redrawn."""

from __future__ import annotations

import getpass

from pydantic import Field

from bridges.base import PlatformConfig


class ConsoleConfig(PlatformConfig):
    user_id: str = Field(default_factory=getpass.getuser, min_length=1, max_length=64)
    display_name: str = Field(default_factory=getpass.getuser, min_length=1, max_length=255)
    edit_interval: float = Field(0.05, ge=0, le=10, description="seconds between two redraws of a reply")
