"""A loopback OpenAI-compatible `/audio/transcriptions` server (OpenAI, faster-whisper, whisper.cpp).

`POST /v1/audio/transcriptions` takes multipart `file` and `model` (and optional `language`,
`response_format`), answers `{"text": ...}`, and refuses what OpenAI refuses: a missing file or model
(400), an empty or oversized file (400, 25 MB), a wrong key (401). `received` keeps each request's audio
bytes, file name and model, so a test checks what the bot sent; `say(text)` sets the next answer.
Failures, hangs and drops are injected as for the other HTTP fakes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fakes.http import FakeHttpService

MAX_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    audio: bytes
    filename: str
    content_type: str
    model: str


class FakeTranscription(FakeHttpService):
    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.received: list[Received] = []
        self._answers: deque[str] = deque()

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    def say(self, text: str) -> None:
        """The transcript of the next request (default: "transcribed N bytes")."""
        self._answers.append(text)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/audio/transcriptions", self._transcribe)]

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}

    async def _transcribe(self, request: web.Request) -> web.StreamResponse:
        if injected := await self.injected(request):
            return injected
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(401, "Incorrect API key provided.")
        if request.content_type != "multipart/form-data":
            return self.reject(400, "expected multipart/form-data")
        form = await request.post()
        file, model = form.get("file"), form.get("model")
        if not isinstance(file, web.FileField):
            return self.reject(400, "you must provide a file")
        if not isinstance(model, str) or not model:
            return self.reject(400, "you must provide a model parameter")
        audio = file.file.read()
        if not audio:
            return self.reject(400, "the audio file is empty")
        if len(audio) > MAX_BYTES:
            return self.error(413, "Maximum content size limit (26214400) exceeded")
        self.received.append(Received(audio, file.filename, file.content_type, model))
        text = self._answers.popleft() if self._answers else f"transcribed {len(audio)} bytes"
        return web.json_response({"text": text})
