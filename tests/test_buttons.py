"""Button tokens: short, stable, stored in the database so presses work after a restart."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Button
from bridges.buttons import TOKEN_LENGTH, DatabaseButtonStore, button_token

BIG = Button("Book a demo", {"type": "path-abc", "payload": {"label": "x" * 500, "actions": [{"n": 1}]}})


def test_tokens_are_short_stable_and_distinct() -> None:
    token = button_token(BIG)
    assert re.fullmatch(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}", token)
    assert button_token(Button(BIG.label, dict(BIG.payload))) == token
    assert button_token(Button("Book a demo", {"type": "path-abd"})) != token
    assert button_token(Button("Open", url="https://a.test")) != button_token(
        Button("Open", url="https://b.test")
    )


async def test_round_trip_survives_a_restart(db: async_sessionmaker[AsyncSession]) -> None:
    store = DatabaseButtonStore(db)
    token = await store.put(BIG)
    assert await store.put(BIG) == token  # storing twice is harmless
    assert await DatabaseButtonStore(db).put(BIG) == token  # also from another process
    restarted = DatabaseButtonStore(db)
    assert await restarted.get(token) == BIG
    assert await restarted.get("forged-token-xyz") is None
