"""A loopback OpenAI-compatible chat completions server that streams like the real one, errors included.

`POST /v1/chat/completions` checks the bearer key (when the fake has one), the model and the request
shape, answering 401/404/400 with OpenAI's `{"error": {...}}` bodies. A streamed reply is a role chunk,
content chunks, a finish chunk and `data: [DONE]`, each event written by hand. Without a script the
fake echoes the last user message, numbered by how many user messages the request carried, so a test
sees at once whether the client replayed the history.

A user message's content may be a list of parts, as for vision models: `{"type": "text", "text"}` and
`{"type": "image_url", "image_url": {"url"}}`, the URL an https link or a base64 `data:image/...` URL.
Malformed parts are a 400, as OpenAI answers them; the images received are kept in `images` (bytes for
data URLs, the link otherwise), and the echo counts them.

With `stream_options: {"include_usage": true}` (and only then) the reply ends, as OpenAI's does, with
a chunk whose `choices` is empty and whose `usage` counts the tokens; every other chunk then carries
`usage: null`. The fake counts a token per whitespace-separated word: of every message's text for the
prompt, of the content it streamed for the completion.

    async with FakeOpenAI(api_key="k") as fake:
        fake.script(content("Hello "), content("there"))
        ... POST to f"{fake.url}/chat/completions" ...
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
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
        self.images: list[tuple[str, bytes | str]] = []
        """Every image part received, as (mime type, bytes) for a data URL or ("url", the link)."""
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
        self.images += [image for message in body["messages"] for image in _images(message["content"])]
        steps, role, finish = self._scripts.popleft() if self._scripts else (self._echo(body), True, True)
        opening: list[Step] = [chunk({"role": "assistant", "content": ""})] if role else []
        ending: list[Step] = [chunk({}, "stop")] if finish else []
        if any(isinstance(step, Hang | Drop) for step in steps):
            ending = []
        played = [*opening, *steps, *ending]
        usage_asked = (body.get("stream_options") or {}).get("include_usage") is True
        if usage_asked:
            played = [_with_null_usage(step) for step in played]
        if ending:  # a reply that finishes: the usage chunk (if asked), then the end marker
            played += [_usage_chunk(body, steps)] if usage_asked else []
            played.append(Raw("data: [DONE]\n\n"))
        return await self.play_sse(request, played)

    def _echo(self, body: dict[str, Any]) -> list[Step]:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        last = users[-1]
        if isinstance(last, list):
            words = " ".join(part["text"] for part in last if part["type"] == "text")
            last = f"{words} [{sum(part['type'] == 'image_url' for part in last)} images]".strip()
        text = f"echo #{len(users)}: {last}"
        return [content(word) for word in re.findall(r"\S+\s*", text)]


def _with_null_usage(step: Step) -> Step:
    """A chunk as sent when usage was asked for: with a `usage` key, null until the last chunk."""
    if isinstance(step, Event) and isinstance(step.data, dict) and "choices" in step.data:
        return replace(step, data={**step.data, "usage": None})
    return step


def _usage_chunk(body: dict[str, Any], steps: Sequence[Step]) -> Event:
    prompt = sum(_words(message["content"]) for message in body["messages"])
    completion = sum(
        _words(step.data["choices"][0]["delta"].get("content") or "")
        for step in steps
        if isinstance(step, Event) and isinstance(step.data, dict) and step.data.get("choices")
    )
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    closing = chunk({})
    return replace(closing, data={**closing.data, "choices": [], "usage": usage})


def _words(content: Any) -> int:
    if isinstance(content, list):
        return sum(len(part["text"].split()) for part in content if part["type"] == "text")
    return len(str(content).split())


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
    options = body.get("stream_options", {})
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        return "Invalid 'stream_options': only include_usage is known"
    if not isinstance(options.get("include_usage", False), bool):
        return "Invalid 'stream_options.include_usage': expected a boolean"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"Invalid value for 'messages[{index}].role'"
        if set(message) - {"role", "content", "name"}:
            return f"Invalid 'messages[{index}]': unknown keys"
        content = message.get("content")
        if isinstance(content, list) and message["role"] == "user":
            problem = _parts_problem(content, index)
            if problem:
                return problem
        elif not isinstance(content, str):
            return f"Invalid 'messages[{index}]': content must be a string or, for a user, a list of parts"
    return ""


_DATA_URL = re.compile(r"data:(image/(?:png|jpeg|gif|webp));base64,(.+)", re.DOTALL)


def _parts_problem(parts: list[Any], index: int) -> str:
    if not parts:
        return f"Invalid 'messages[{index}].content': empty array"
    for number, part in enumerate(parts):
        where = f"messages[{index}].content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind != "image_url":
            return f"Invalid '{where}': expected a text or image_url part"
        url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
        if not isinstance(url, str) or not (url.startswith("https://") or _decoded(url) is not None):
            return f"Invalid '{where}.image_url.url': expected an https URL or a base64 image data URL"
    return ""


def _decoded(url: str) -> tuple[str, bytes] | None:
    match = _DATA_URL.fullmatch(url)
    if match is None:
        return None
    try:
        return match[1], base64.b64decode(match[2], validate=True)
    except binascii.Error:
        return None


def _images(content: Any) -> list[tuple[str, bytes | str]]:
    if not isinstance(content, list):
        return []
    found: list[tuple[str, bytes | str]] = []
    for part in content:
        if part["type"] == "image_url":
            url = part["image_url"]["url"]
            found.append(_decoded(url) or ("url", url))
    return found
