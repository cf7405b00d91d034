"""Short tokens for buttons, so a press can be traced back to its full payload, even after a restart.

The token is a hash of the button, so the same button always gets the same token and storing it twice
is harmless. 16 URL-safe characters fit both Discord's custom_id and Telegram's callback_data with room
for a prefix.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Button
from models import StoredButton
from models.queries import insert_ignoring_duplicates

TOKEN_LENGTH = 16
CACHE_LIMIT = 10_000


def button_token(button: Button) -> str:
    canonical = json.dumps([button.label, button.payload, button.url], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:TOKEN_LENGTH]


class ButtonStore(Protocol):
    async def put(self, button: Button) -> str:
        """Remember `button`; return its token."""
        ...

    async def get(self, token: str) -> Button | None:
        """The button behind `token`, or None for a forged or unknown token."""
        ...


class DatabaseButtonStore:
    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db
        self._known: dict[str, Button] = {}

    async def put(self, button: Button) -> str:
        token = button_token(button)
        if token in self._known:
            return token
        values = {"token": token, "label": button.label, "payload": button.payload, "url": button.url}
        async with self.db.begin() as session:
            await session.execute(
                insert_ignoring_duplicates(session, StoredButton).values(values).on_conflict_do_nothing()
            )
        self._remember(token, button)
        return token

    async def get(self, token: str) -> Button | None:
        if token in self._known:
            return self._known[token]
        async with self.db() as session:
            row = await session.scalar(select(StoredButton).where(StoredButton.token == token))
        if row is None:
            return None
        button = Button(row.label, dict(row.payload), row.url)
        self._remember(token, button)
        return button

    def _remember(self, token: str, button: Button) -> None:
        if len(self._known) >= CACHE_LIMIT:
            self._known.clear()  # a cache, not the record: the database still has every button
        self._known[token] = button
