"""The console bridge in-process: streaming is visible on a pipe, and redraws in place on a terminal."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import TextIO

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.demo import DemoAgent, DemoSettings
from bridges.console.bridge import ConsoleBridge, ConsoleSurface, Terminal
from bridges.console.config import ConsoleConfig
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy


class RecordingOutput(io.StringIO):
    """Captures each write separately, optionally pretending to be a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def piped_stdin() -> Iterator[tuple[TextIO, TextIO]]:
    read_fd, write_fd = os.pipe()
    reader, writer = os.fdopen(read_fd, "r"), os.fdopen(write_fd, "w")
    yield reader, writer
    for stream in (reader, writer):
        if not stream.closed:
            stream.close()


@pytest.mark.slow
async def test_piped_session_streams_each_chunk(
    db: async_sessionmaker[AsyncSession], piped_stdin: tuple[TextIO, TextIO]
) -> None:
    reader, writer = piped_stdin
    writer.write("hello\n2\nfail\n")
    writer.close()
    output = RecordingOutput(tty=False)
    demo = DemoAgent("demo", DemoSettings(first_chunk_delay=0, chunk_delay=0.002))
    relay = Relay(db, {"demo": demo}, RelayPolicy("demo", timedelta(hours=1), timedelta(minutes=5), {}))
    bridge = ConsoleBridge(
        ConsoleConfig(user_id="ada", display_name="Ada", edit_interval=0),
        relay,
        terminal=Terminal(reader, output),
    )
    await bridge.run()

    text = output.getvalue()
    assert text.startswith("you> hello\nbot> Hi **Ada**!")
    assert "[1] Tell me a joke  [2] Show a long answer  [3] Talk to a human" in text
    assert "you> 2\nbot> **Part 1.**" in text  # the button number pressed "Show a long answer"
    assert "you> fail\nbot> Let me look that up for you...\n\n⚠️ The assistant is unreachable" in text
    streamed = [w for w in output.writes if w and not w.startswith(("you>", "bot>", "\n"))]
    assert len(streamed) > 20  # the long answer arrived as many small appended pieces, not one print


async def test_terminal_edit_redraws_in_place() -> None:
    output = RecordingOutput(tty=True)
    surface = ConsoleSurface(Terminal(io.StringIO(), output), edit_interval=0)
    first = await surface.send("Hello")
    await surface.edit(first, "Hello world")
    assert output.writes[-2:] == ["\r\x1b[J", "bot> Hello world"]
    await surface.edit(first, "Hello world\nsecond line")
    await surface.edit(first, "Hello world\nsecond line, longer")
    assert output.writes[-2:] == ["\r\x1b[1A\x1b[J", "bot> Hello world\nsecond line, longer"]
    second = await surface.send("Next message")
    await surface.edit(first, "Hello world, edited after a follow-up")
    assert output.writes[-1] == "bot> Hello world, edited after a follow-up"  # printed anew, not redrawn
    assert second == "2"
