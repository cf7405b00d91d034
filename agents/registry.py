"""Which agent kinds exist. Adding a provider means adding one module and one line to `KINDS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from agents.base import Agent, AgentSettings
from agents.convai import ConvaiAgent, ConvaiSettings
from agents.convocore_rest import ConvocoreRestAgent, ConvocoreRestSettings
from agents.convocore_ws import ConvocoreWsAgent, ConvocoreWsSettings
from agents.demo import DemoAgent, DemoSettings
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from agents.voiceflow import VoiceflowAgent, VoiceflowSettings


@dataclass(frozen=True)
class AgentKind:
    settings: type[AgentSettings]
    build: Callable[[str, Any, httpx.AsyncClient], Agent]


KINDS: dict[str, AgentKind] = {
    "demo": AgentKind(DemoSettings, lambda name, settings, http: DemoAgent(name, settings)),
    "convocore": AgentKind(
        ConvocoreWsSettings, lambda name, settings, http: ConvocoreWsAgent(name, settings)
    ),
    "convocore_rest": AgentKind(
        ConvocoreRestSettings, lambda name, settings, http: ConvocoreRestAgent(name, settings, http)
    ),
    "convai": AgentKind(ConvaiSettings, lambda name, settings, http: ConvaiAgent(name, settings, http)),
    "voiceflow": AgentKind(VoiceflowSettings, lambda name, settings, http: VoiceflowAgent(name, settings)),
    "openai": AgentKind(
        OpenAICompatSettings, lambda name, settings, http: OpenAICompatAgent(name, settings, http)
    ),
}


def create_agent(name: str, settings: AgentSettings, *, http: httpx.AsyncClient) -> Agent:
    """Build the agent for one `[agents.NAME]` section; `http` is the process-wide shared client."""
    try:
        kind = KINDS[settings.kind]
    except KeyError:
        raise ValueError(f"agents.{name}.kind: unknown agent kind {settings.kind!r}") from None
    return kind.build(name, settings, http)
