"""A loopback OpenAI-compatible chat completions server that streams like the real one, errors included.

`POST /v1/chat/completions` checks the bearer key (when the fake has one), the model and the request
shape, answering 401/404/400 with OpenAI's `{"error": {...}}` bodies. A streamed reply is a role chunk,
content chunks, a finish chunk and `data: [DONE]`, each event written by hand. Without a script the
fake echoes the last user message, numbered by how many user messages the request carried, so a test
sees at once whether the client replayed the history.

    async with FakeOpenAI(api_key="k") as fake:
        fake.script(content("Hello "), content("there"))
        ... POST to f"{fake.url}/chat/completions" ...
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from fakes.http import Drop, Event, FakeHttpService, Hang, Raw, Step

ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
OPTIONAL_KEYS = frozenset({"temperature", "max_tokens", "stream_options", "top_p", "stop", "user"})


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> Event:
    return Event(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def content(text: str) -> Event:
    return chunk({"content": text})


def stream_error(message: str, kind: str = "server_error") -> Event:
    """An error sent after the stream started, as OpenAI does when a reply fails midway."""
    return Event({"error": {"message": message, "type": kind, "param": None, "code": None}})


class FakeOpenAI(FakeHttpService):
    """Serve `{url}/chat/completions`; inspect `requests` (the JSON bodies) afterwards."""

    def __init__(
        self,
        *,
        api_key: str | None = "sk-fake",
        model: str = "fake-model",
        first_chunk_delay: float = 0.0,
        chunks_per_second: float | None = None,
    ) -> None:
        super().__init__(first_chunk_delay=first_chunk_delay, chunks_per_second=chunks_per_second)
        self.api_key = api_key
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._scripts: deque[tuple[Sequence[Step], bool, bool]] = deque()

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self._completions)]

    def error_body(self, status: int, message: str) -> Any:
        kinds = {401: "invalid_request_error", 429: "rate_limit_exceeded"}
        kind = kinds.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def script(self, *steps: Step, role: bool = True, finish: bool = True) -> None:
        """Answer the next request with `steps`.

        `role` sends OpenAI's opening chunk (`delta.role`, empty content) first; `finish` ends with the
        stop chunk and `data: [DONE]` (never after a hang or a drop).
        """
        self._scripts.append((steps, role, finish))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        if injected := await self.injected(request):
            return injected
        self.headers.append(dict(request.headers))
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            # OpenAI masks the key it was given; it never echoes it whole.
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            masked = f"{given[:3]}***{given[-4:]}" if len(given) > 8 else "***"
            return self.error(401, f"Incorrect API key provided: {masked}.")
        try:
            body = await request.json()
        except ValueError:
            return self.reject(400, "We could not parse the JSON body of your request.")
        problem = _problem(body)
        if problem:
            return self.reject(400, problem)
        if body["model"] != self.model:
            return self.reject(
                404, f"The model `{body['model']}` does not exist or you do not have access to it."
            )
        self.requests.append(body)
        steps, role, finish = self._scripts.popleft() if self._scripts else (self._echo(body), True, True)
        opening: list[Step] = [chunk({"role": "assistant", "content": ""})] if role else []
        ending: list[Step] = [chunk({}, "stop"), Raw("data: [DONE]\n\n")] if finish else []
        if any(isinstance(step, Hang | Drop) for step in steps):
            ending = []
        return await self.play_sse(request, [*opening, *steps, *ending])

    def _echo(self, body: dict[str, Any]) -> list[Step]:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        text = f"echo #{len(users)}: {users[-1]}"
        return [content(word) for word in re.findall(r"\S+\s*", text)]


def _problem(body: Any) -> str:
    """What OpenAI's request validation would refuse with a 400."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    unknown = set(body) - {"model", "messages", "stream"} - OPTIONAL_KEYS
    if unknown:
        return f"Unrecognized request argument supplied: {sorted(unknown)[0]}"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    if body.get("stream") is not True:
        return "this fake only streams: stream must be true"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"Invalid value for 'messages[{index}].role'"
        if not isinstance(message.get("content"), str) or set(message) - {"role", "content", "name"}:
            return f"Invalid 'messages[{index}]': content must be a string"
    return ""
