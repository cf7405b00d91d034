"""The SSE wire format as `EventParser` reads it, whatever way the network cuts the stream."""

from __future__ import annotations

import pytest

from agents.sse import EventParser

STREAM = (
    ": a comment, then an event without a name\r\n"
    "data: one\r\n\r\n"
    "event: bot-text\n"
    'data: {"a":\n'
    "data:1}\n\n"
    "data: three\r\r"
    "event: ignored, no data\n\n"
    "data: unfinished"
)
EVENTS = [("message", "one"), ("bot-text", '{"a":\n1}'), ("message", "three")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_events_are_the_same_however_the_stream_is_cut(size: int) -> None:
    parser = EventParser()
    events = [event for at in range(0, len(STREAM), size) for event in parser.feed(STREAM[at : at + size])]
    assert events == EVENTS


def test_one_read_with_several_events_returns_them_all() -> None:
    assert EventParser().feed("data: a\n\ndata: b\n\n") == [("message", "a"), ("message", "b")]
