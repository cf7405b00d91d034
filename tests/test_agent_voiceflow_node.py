"""The Voiceflow backend against a second, independent peer: the reference socket.io 4 server in Node.

The Python fake and our client share one library (python-socketio), so a wire-level misunderstanding
could hide in both. tests/node/voiceflow_server.js runs the npm `socket.io` server instead.
Needs `node` and `npm ci --prefix tests/node`; without them the test skips, unless
SWITCHBOARD_REQUIRE_NODE=1 (as in CI), where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agents.base import Buttons, Message, TextDelta
from agents.voiceflow import VoiceflowAgent, VoiceflowSettings
from tests.agent_support import FAST_RETRIES, collect, state_of, text_of, turn

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).parent / "node"
SERVER = NODE_DIR / "voiceflow_server.js"
API_KEY = "VF.DM.node-peer-key"
PROJECT_ID = "node-project"


class NodePeer:
    """The running Node server: its port, and the events it reports receiving (one JSON line each)."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    async def received(self, count: int) -> list[dict[str, Any]]:
        """The next `count` events the server reports having received from a client."""
        assert self.process.stdout is not None
        async with asyncio.timeout(5):
            return [json.loads(await self.process.stdout.readline()) for _ in range(count)]


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "socket.io").is_dir():
        return "tests/node/node_modules is missing (run `npm ci --prefix tests/node`)"
    return None


@pytest.fixture
async def node_peer() -> AsyncIterator[NodePeer]:
    missing = _missing()
    if missing:
        if os.environ.get("SWITCHBOARD_REQUIRE_NODE") == "1":
            pytest.fail(f"SWITCHBOARD_REQUIRE_NODE=1 but {missing}")
        pytest.skip(missing)
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(SERVER),
        "0",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "VOICEFLOW_API_KEY": API_KEY, "VOICEFLOW_PROJECT_ID": PROJECT_ID},
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        async with asyncio.timeout(10):
            first = await process.stdout.readline()
        yield NodePeer(process, json.loads(first)["port"])
    finally:
        process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_a_streamed_turn_with_a_choice_then_a_second_turn(node_peer: NodePeer) -> None:
    settings = VoiceflowSettings(
        runtime_url=node_peer.url, api_key=SecretStr(API_KEY), project_id=PROJECT_ID, **FAST_RETRIES
    )
    agent = VoiceflowAgent("vf", settings)

    first = await collect(agent, turn("/start"))
    assert first[:3] == [TextDelta("Hello "), TextDelta("from "), TextDelta("Node!")]
    (buttons,) = [event for event in first if isinstance(event, Buttons)]
    assert [button.label for button in buttons.buttons] == ["Pricing", "Support"]
    state = state_of(first)

    second = await collect(agent, turn("Pricing", state, button=buttons.buttons[0]))
    assert second[:-1] == [Message("You picked Pricing (action 2 of this session).")]
    assert state_of(second) == state and text_of(second) == ""

    received = await node_peer.received(5)
    assert [line["event"] for line in received] == [
        "client.start",
        "session.create",
        "action.send",
        "client.start",
        "action.send",
    ]
    assert received[3]["data"]["sessionKey"] == state["sessionKey"]
    assert received[4]["data"] == {"action": {"type": "path-pricing", "payload": {"label": "Pricing"}}}
