"""One adapter per provider kind: how to build its agent and drive its loopback fake for the contract suite.

Adding a provider means one module in agents/, one line in `agents.registry.KINDS` and one adapter here,
listed in `ADAPTERS`. An adapter scripts replies in the provider's own wire shapes, so every contract
case runs through the real client library against a fake that checks what it receives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from agents.base import Agent, AgentEvent, Button, Message, TextDelta
from agents.convai import ConvaiAgent, ConvaiSettings
from agents.convocore_rest import ConvocoreRestAgent, ConvocoreRestSettings
from agents.convocore_ws import ConvocoreWsAgent, ConvocoreWsSettings
from agents.http import agent_http_client
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from agents.voiceflow import VoiceflowAgent, VoiceflowSettings
from fakes import convai as fconvai
from fakes import convocore_rest as frest
from fakes import convocore_ws as fws
from fakes import http as fhttp
from fakes import openai as fopenai
from fakes import voiceflow as fvf
from tests.agent_support import FAST_RETRIES

SECRET = "contract-secret-never-log-7f3a"
PARTIAL = "partial "


class Adapter:
    """What the contract suite needs of a provider; subclasses fill in the wire details."""

    kind: ClassVar[str]
    stateful: ClassVar[bool] = True
    """The provider keeps a session (a key in the provider state); OpenAI-compatible replays history."""
    streams: ClassVar[bool] = True
    """Text arrives as `TextDelta`s; Convocore REST answers whole messages."""
    handoff: ClassVar[bool] = True
    """The provider can ask for a human by itself."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Adapter]:
        """Start the fake; on the way out, fail if the client sent anything the real service would refuse."""
        async with self.fake:
            yield self
        assert self.rejections() == [], "the client sent a request the real service would refuse"

    @property
    def fake(self) -> Any:
        raise NotImplementedError

    def agent(self, **overrides: Any) -> Agent:
        raise NotImplementedError

    def dead_agent(self) -> Agent:
        """An agent whose provider refuses connections (its fake has gone)."""
        raise NotImplementedError

    def rejections(self) -> list[str]:
        return list(self.fake.rejections)

    def requests(self) -> int:
        """Requests the provider accepted and began to answer."""
        return len(self.fake.requests)

    def attempts(self) -> int:
        """Connections or requests that reached the fake, refused ones included."""
        return int(self.fake.hits)

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Refuse the next `times` attempts the way the provider reports HTTP-like `status`."""
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        self.fake.fail(status, times=times, headers=headers)

    def script_text(self, *parts: str) -> None:
        raise NotImplementedError

    def script_cut(self, cut: str) -> None:
        """The next reply shows `PARTIAL` (if the provider streams), then `"hang"`s or `"drop"`s."""
        raise NotImplementedError

    def script_silence(self) -> None:
        """The next request is accepted and never answered."""
        self.fake.hang_next()

    def script_malformed_then(self, text: str) -> None:
        raise NotImplementedError

    def script_failure_after_session(self) -> None:
        """The next turn opens a provider session and then fails."""
        self.script_cut("drop")

    def script_buttons(self, *labels: str) -> None:
        """Offer `labels` as buttons, if the provider can; else the suite presses a plain `Button`."""

    def script_handoff(self) -> None:
        raise NotImplementedError

    def pressed(self) -> Any:
        """What the fake received for the last request, in the part that carries a button press."""
        raise NotImplementedError

    def accepted_press(self, button: Button) -> Any:
        """What the provider accepts for pressing `button`."""
        return button.label

    def unknown_agent(self) -> Agent:
        """An agent configured with an id the provider does not know."""
        raise NotImplementedError


class _HttpAdapter(Adapter):
    """Convai, OpenAI-compatible and Convocore REST share `fakes.http`'s failure injection."""

    def dead_agent(self) -> Agent:
        return self.agent(**{self.url_field: "http://127.0.0.1:9/"})

    url_field: ClassVar[str]

    def script_cut(self, cut: str) -> None:
        self.fake.script(*self.partial(), fhttp.Hang() if cut == "hang" else fhttp.Drop())

    def partial(self) -> list[fhttp.Step]:
        raise NotImplementedError


class ConvaiAdapter(_HttpAdapter):
    kind = "convai"
    handoff = False
    url_field = "url"

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(http)
        self._fake = fconvai.FakeConvai(api_key=SECRET)

    @property
    def fake(self) -> fconvai.FakeConvai:
        return self._fake

    def agent(self, **overrides: Any) -> Agent:
        values = {"url": self.fake.url, "character_id": self.fake.character_id, "api_key": SecretStr(SECRET)}
        return ConvaiAgent("guide", ConvaiSettings(**(values | FAST_RETRIES | overrides)), self.http)

    def unknown_agent(self) -> Agent:
        return self.agent(character_id="someone-else")

    def rejections(self) -> list[str]:
        return [r for r in self.fake.rejections if r != "Character not found"]

    def script_text(self, *parts: str) -> None:
        self.fake.script(*fconvai.reply(*parts))

    def partial(self) -> list[fhttp.Step]:
        return [fconvai.llm_text(PARTIAL)]

    def script_malformed_then(self, text: str) -> None:
        self.fake.script(fhttp.Raw("data: {not json\n\n"), fhttp.Event([1, 2]), *fconvai.reply(text))

    def pressed(self) -> Any:
        return self.fake.requests[-1]["text_input"]


class OpenAIAdapter(_HttpAdapter):
    kind = "openai"
    stateful = False
    handoff = False
    url_field = "base_url"

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(http)
        # paced like a provider, so events sent apart are read apart (events already buffered together
        # are one delta)
        self._fake = fopenai.FakeOpenAI(api_key=SECRET, chunks_per_second=1000)

    @property
    def fake(self) -> fopenai.FakeOpenAI:
        return self._fake

    def agent(self, **overrides: Any) -> Agent:
        values = {"base_url": self.fake.url, "api_key": SecretStr(SECRET), "model": self.fake.model}
        return OpenAICompatAgent(
            "gpt", OpenAICompatSettings(**(values | FAST_RETRIES | overrides)), self.http
        )

    def unknown_agent(self) -> Agent:
        return self.agent(model="no-such-model")

    def rejections(self) -> list[str]:
        return [r for r in self.fake.rejections if "no-such-model" not in r]

    def script_text(self, *parts: str) -> None:
        self.fake.script(*(fopenai.content(part) for part in parts))

    def partial(self) -> list[fhttp.Step]:
        return [fopenai.content(PARTIAL)]

    def script_malformed_then(self, text: str) -> None:
        self.fake.script(fhttp.Raw("data: {not json\n\n"), fhttp.Event("a string"), fopenai.content(text))

    def pressed(self) -> Any:
        return self.fake.requests[-1]["messages"][-1]["content"]


class ConvocoreRestAdapter(_HttpAdapter):
    kind = "convocore_rest"
    streams = False
    url_field = "base_url"

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(http)
        self._fake = frest.FakeConvocoreRest(secret=SECRET)

    @property
    def fake(self) -> frest.FakeConvocoreRest:
        return self._fake

    def agent(self, **overrides: Any) -> Agent:
        values = {"base_url": self.fake.url, "agent_id": self.fake.agent_id, "api_key": SecretStr(SECRET)}
        settings = ConvocoreRestSettings(**(values | FAST_RETRIES | overrides))
        return ConvocoreRestAgent("cc", settings, self.http)

    def unknown_agent(self) -> Agent:
        return self.agent(agent_id="someone-else")

    def rejections(self) -> list[str]:
        return [r for r in self.fake.rejections if r != "Agent not found"]

    def script_text(self, *parts: str) -> None:
        self.fake.script(frest.text_item("".join(parts)))

    def script_cut(self, cut: str) -> None:
        self.fake.script(frest.text_item(PARTIAL), cut=fhttp.Hang() if cut == "hang" else fhttp.Drop())

    def script_malformed_then(self, text: str) -> None:
        item = {"type": "text", "payload": {"message": text}}
        self.fake.script(fields={"turns": [7, {"from": "bot", "messages": [{"x": 1}, item]}]})

    def script_buttons(self, *labels: str) -> None:
        self.fake.script(frest.text_item("Pick one"), frest.choice_item(*labels))

    def script_handoff(self) -> None:
        self.fake.script(frest.text_item("One moment."), state="requested_chat")

    def pressed(self) -> Any:
        return self.fake.requests[-1].body["action"]

    def accepted_press(self, button: Button) -> Any:
        return {"type": "text", "payload": button.label}


class ConvocoreWsAdapter(Adapter):
    kind = "convocore"

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(http)
        self._fake = fws.FakeConvocore(secret=SECRET)

    @property
    def fake(self) -> fws.FakeConvocore:
        return self._fake

    def agent(self, **overrides: Any) -> Agent:
        values = {
            "url": self.fake.url,
            "agent_id": self.fake.agent_id,
            "owner_id": self.fake.owner_id,
            "api_key": SecretStr(SECRET),
        }
        return ConvocoreWsAgent("cc", ConvocoreWsSettings(**(values | FAST_RETRIES | overrides)))

    def dead_agent(self) -> Agent:
        return self.agent(url="ws://127.0.0.1:9/interact")

    def unknown_agent(self) -> Agent:
        return self.agent(url=self.fake.url.replace("/interact", "/v2/interact"))

    def attempts(self) -> int:
        return self.fake.handshakes

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        self.fake.fail_handshake(status, times=times, headers=headers)

    def script_text(self, *parts: str) -> None:
        self.fake.script(*(fws.Chunk(part) for part in parts), fws.Close())

    def script_cut(self, cut: str) -> None:
        self.fake.script(fws.Chunk(PARTIAL), fws.Hang() if cut == "hang" else fws.Drop())

    def script_silence(self) -> None:
        self.fake.script(fws.Hang())

    def script_malformed_then(self, text: str) -> None:
        self.fake.script(fws.Frame("{not json"), fws.Frame({"no": "type"}), fws.Chunk(text), fws.Close())

    def script_buttons(self, *labels: str) -> None:
        self.fake.script(fws.Snapshot([fws.text_item("Pick one"), fws.choice_item(*labels)]), fws.Close())

    def script_handoff(self) -> None:
        self.fake.script(fws.Chunk("One moment."), fws.handoff(), fws.Close())

    def pressed(self) -> Any:
        return self.fake.requests[-1]["prompt"]


class VoiceflowAdapter(Adapter):
    kind = "voiceflow"

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(http)
        self._fake = fvf.FakeVoiceflow(api_key=SECRET)

    @property
    def fake(self) -> fvf.FakeVoiceflow:
        return self._fake

    def agent(self, **overrides: Any) -> Agent:
        values = {
            "runtime_url": self.fake.url,
            "socketio_path": self.fake.path,
            "api_key": SecretStr(SECRET),
            "project_id": self.fake.project_id,
        }
        return VoiceflowAgent("vf", VoiceflowSettings(**(values | FAST_RETRIES | overrides)))

    def dead_agent(self) -> Agent:
        return self.agent(runtime_url="http://127.0.0.1:9")

    def unknown_agent(self) -> Agent:
        self.fake.refuse_connections("project not found", {"code": 404}, times=1)
        return self.agent()

    def requests(self) -> int:
        return len(self.fake.actions)

    def attempts(self) -> int:
        return self.fake.connections

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        self.fake.refuse_connections(f"HTTP {status}", {"code": status}, times=times)

    def script_text(self, *parts: str) -> None:
        self.fake.script(fvf.completion(*parts))

    def script_cut(self, cut: str) -> None:
        # Aborting the transport right after a write may discard that write, so "drop" is a server-side
        # disconnect here; test_agent_voiceflow cuts the TCP connection behind a gate.
        self.fake.script(fvf.completion(PARTIAL)[:2], fvf.Hang() if cut == "hang" else fvf.Disconnect())

    def script_silence(self) -> None:
        self.fake.script(fvf.Hang())

    def script_failure_after_session(self) -> None:
        self.fake.script(fvf.text(fvf.GREETING))  # the launch a new session opens with
        self.fake.script(fvf.Reject("invalid action"))

    def script_malformed_then(self, text: str) -> None:
        self.fake.script(
            fvf.Emit("action.trace", "not an object"), fvf.Emit("action.trace", {"trace": {}}), fvf.text(text)
        )

    def script_buttons(self, *labels: str) -> None:
        self.fake.script(fvf.text("Pick one"), fvf.choice(*labels))

    def script_handoff(self) -> None:
        self.fake.script(fvf.text("One moment."), fvf.Trace("talk_to_agent", {}))

    def pressed(self) -> Any:
        return self.fake.actions[-1]

    def accepted_press(self, button: Button) -> Any:
        return button.payload


ADAPTERS: dict[str, Callable[[httpx.AsyncClient], Adapter]] = {
    adapter.kind: adapter
    for adapter in (VoiceflowAdapter, ConvocoreWsAdapter, ConvocoreRestAdapter, ConvaiAdapter, OpenAIAdapter)
}
"""Every networked kind of `agents.registry.KINDS` (demo needs no network and has its own tests)."""


@asynccontextmanager
async def started(kind: str) -> AsyncIterator[Adapter]:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(agent_http_client())
        adapter = ADAPTERS[kind](http)
        yield await stack.enter_async_context(adapter.running())


def shown(events: Sequence[AgentEvent]) -> str:
    """The reply's words, streamed or whole."""
    return "".join(event.text for event in events if isinstance(event, TextDelta | Message))
