"""Any OpenAI-compatible chat completions server (OpenAI, vLLM, llama.cpp, Ollama, LM Studio...).

Each turn POSTs `{base_url}/chat/completions` with `stream: true` and streams `choices[0].delta.content`
as `TextDelta`s until `data: [DONE]` (or the end of the stream): one delta per network read, joining
every chunk it held.

The API is stateless, so continuity comes from our own transcript: the Relay passes the recent history
in `Turn.history` and it is replayed every turn; `provider_state` stays empty. For the same reason a
reply can be regenerated (`Regenerable`): the turn is asked again with the history that preceded it.
History roles map as:
- `user` -> `user`;
- `agent` -> `assistant`;
- `moderator` -> `assistant`: a human moderator spoke for the service, so the model should treat those
  words as its own side of the conversation and carry on from them after a handoff.
Empty lines are left out, and consecutive entries are sent as they are (every compatible server takes
repeated roles).

A button press sends the words the user would have typed (the button's label); this backend never
offers buttons itself, but a press can still arrive from a message another agent sent earlier.

Token usage: unless `report_usage` is off, the request asks for `stream_options.include_usage`, and
the closing chunk's `usage` (prompt and completion tokens) comes back in `TurnEnd.usage`.

Files: with `max_images` above 0 (a vision model), images go as `image_url` content parts holding a
`data:` URL, since platform CDN links expire or need the bot's token; text files up to
`max_text_file_bytes` go inline in the user's message, fenced and named. Everything else is told to the
user by the Relay (bridges/attachments.py), from `media`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import httpx
from pydantic import Field, HttpUrl, SecretStr

from agents.base import (
    AgentError,
    AgentEvent,
    AgentRateLimited,
    AgentUnavailable,
    Attachment,
    BaseAgent,
    MediaSupport,
    TextDelta,
    Turn,
    TurnEnd,
    Usage,
)
from agents.remote import RemoteAgentSettings
from agents.sse import JsonEvent, json_events

log = logging.getLogger(__name__)

ROLES = {"user": "user", "agent": "assistant", "moderator": "assistant"}


class OpenAICompatSettings(RemoteAgentSettings):
    kind: Literal["openai"] = "openai"
    base_url: HttpUrl = Field(
        HttpUrl("https://api.openai.com/v1"), description="the API root; `/chat/completions` is appended"
    )
    api_key: SecretStr | None = Field(
        None, description="sent as `Authorization: Bearer`; local servers need none"
    )
    model: str = Field(min_length=1, max_length=200)
    system_prompt: str | None = Field(None, max_length=20_000)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    max_images: int = Field(0, ge=0, le=20, description="images per message for a vision model; 0: none")
    max_image_bytes: int = Field(5 * 1024 * 1024, gt=0, le=20 * 1024 * 1024)
    max_text_files: int = Field(3, ge=0, le=20, description="text files put inline in the message")
    max_text_file_bytes: int = Field(100_000, gt=0, le=1_000_000)
    report_usage: bool = Field(
        True,
        description="ask for the token usage of each reply (`stream_options.include_usage`), for quotas "
        "and metrics; turn off for a server that refuses the option",
    )

    @property
    def completions_url(self) -> str:
        return str(self.base_url).rstrip("/") + "/chat/completions"


class OpenAICompatAgent(BaseAgent):
    def __init__(self, name: str, settings: OpenAICompatSettings, http: httpx.AsyncClient) -> None:
        super().__init__(name)
        self.settings = settings
        self.http = http
        self.provider = f"openai[{name}]"
        self.media = MediaSupport(
            max_images=settings.max_images,
            max_image_bytes=settings.max_image_bytes,
            max_text_files=settings.max_text_files,
            max_text_bytes=settings.max_text_file_bytes,
        )

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        secret = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        usage: Usage | None = None
        async with json_events(
            self.http,
            self.settings,
            self.provider,
            self.settings.completions_url,
            secrets=(secret,),
            headers=headers,
            json=self._body(turn),
        ) as batches:
            async for batch in batches:  # one delta per network read, however many chunks it held
                parts: list[str] = []
                failed: AgentError | None = None
                for event in batch:
                    try:
                        parts.append(self._content(event))
                    except AgentError as error:  # the text read before it is still shown
                        failed = error
                        break
                    usage = _usage(event) or usage
                if text := "".join(parts):
                    yield TextDelta(text)
                if failed is not None:
                    raise failed
        yield TurnEnd({}, usage=usage)

    def regenerate(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        """Stateless: asking again is asking the same way (`Regenerable`)."""
        return self.stream(turn)

    def _body(self, turn: Turn) -> dict[str, Any]:
        messages: list[dict[str, Any]] = (
            [{"role": "system", "content": self.settings.system_prompt}]
            if self.settings.system_prompt
            else []
        )
        messages += [
            {"role": ROLES[entry.role], "content": entry.text} for entry in turn.history if entry.text
        ]
        messages.append({"role": "user", "content": _user_content(turn)})
        body: dict[str, Any] = {"model": self.settings.model, "messages": messages, "stream": True}
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            body["max_tokens"] = self.settings.max_tokens
        if self.settings.report_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def _content(self, event: JsonEvent) -> str:
        """The text a chunk adds. Chunks without choices (usage, keep-alives) add nothing."""
        data = event.data
        if not isinstance(data, Mapping):
            log.warning("%s: skipping a chunk that is not an object", self.provider)
            return ""
        if "error" in data:
            raise _stream_error(self.provider, data["error"])
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            return ""
        choice = choices[0] if isinstance(choices[0], Mapping) else {}
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, Mapping) else None
        if choice.get("finish_reason") == "length":
            log.info("%s: the reply was cut at the token limit", self.provider)
        return content if isinstance(content, str) else ""


def _usage(event: JsonEvent) -> Usage | None:
    """The token counts of the closing chunk sent when `include_usage` was asked (`choices` empty,
    `usage` set; every other chunk has `usage: null`)."""
    usage = event.data.get("usage") if isinstance(event.data, Mapping) else None
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int) or min(prompt, completion) < 0:
        return None
    return Usage(prompt, completion)


def _user_content(turn: Turn) -> str | list[dict[str, Any]]:
    """The user's words with any text files inline; a list of parts when there are images."""
    text = turn.button.label if turn.button else turn.text
    files = [a for a in turn.attachments if a.kind != "image" and a.data is not None]
    for file in files:
        body = file.data.decode("utf-8", errors="replace") if file.data else ""
        text += f"\n\n{file.name or 'file'}:\n```\n{body}\n```"
    images = [a for a in turn.attachments if a.kind == "image" and a.data is not None]
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
    return parts + [{"type": "image_url", "image_url": {"url": _data_url(image)}} for image in images]


def _data_url(image: Attachment) -> str:
    mime = image.mime if image.mime.startswith("image/") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(image.data or b'').decode()}"


def _stream_error(provider: str, error: Any) -> AgentError:
    """An `{"error": {...}}` chunk sent after the stream started (the server failed mid-reply)."""
    details = error if isinstance(error, Mapping) else {"message": str(error)}
    kind = str(details.get("type") or details.get("code") or "")
    detail = f"{provider}: error mid-reply: {str(details.get('message', ''))[:200]} ({kind or 'no type'})"
    if "rate_limit" in kind:
        return AgentRateLimited(detail)
    if kind in ("server_error", "overloaded_error", "service_unavailable"):
        return AgentUnavailable(detail)
    return AgentError(detail)
