"""Takeovers across processes, on SQLite and PostgreSQL: two Relays on one database, as two bot processes
are, the reply streaming in one while a moderator takes the conversation over in the other."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import TextDelta
from bridges.controls import ControlNotices
from bridges.handoff_notices import UserNotices
from bridges.moderation import Moderator, Target
from bridges.relay import Relay
from bridges.takeover import Takeovers, TakeoverWords
from fakes.telegram.harness import ScriptedAgent
from tests.surfaces import RecordingSurface
from tests.test_relay import POLICY, Clock, inbound

STOPPED = f"Once upon a time {ControlNotices.stopped_mark}"
"""What the user keeps of a reply a takeover stopped: the text so far, marked stopped."""


async def test_a_reply_streaming_in_another_process_stops_at_its_next_tick(
    db: async_sessionmaker[AsyncSession],
) -> None:
    clock, user = Clock(), RecordingSurface()
    streaming, acting = ScriptedAgent(), ScriptedAgent()
    here = Relay(db, {"scripted": streaming, "other": streaming}, POLICY, now=clock)
    there = Relay(db, {"scripted": acting, "other": acting}, POLICY, now=clock)
    there.handoffs.surface_for = lambda platform, chat_id, thread_id: user  # it reaches the user too
    story = streaming.feed("tell me a story")
    story.put_nowait(TextDelta("Once upon a time"))  # then the provider takes its time
    turn = asyncio.create_task(here.handle(inbound("tell me a story"), user))
    await user.wait_for(lambda: any("Once upon a time" in text for text in user.visible_texts()))

    maya = Moderator("discord:7", "Maya", "discord server 1, channel 2")
    answer = await Takeovers(there).take_over(maya, Target("console", "u1"))
    assert answer == TakeoverWords.taken.format(user="User u1", id=1)
    assert not turn.done()  # that process knows nothing yet

    await here.handoffs.tick()
    result = await asyncio.wait_for(turn, 5)
    assert result is not None and result.stopped and result.text == STOPPED
    assert user.visible_texts() == [STOPPED, UserNotices.claimed.format(name="Maya")]
