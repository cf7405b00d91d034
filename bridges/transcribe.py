"""Voice notes to text through an OpenAI-compatible `POST {url}/audio/transcriptions` (multipart `file`,
`model`, answering `{"text": ...}`): OpenAI, faster-whisper-server, whisper.cpp's server and LocalAI
all speak it. One attempt per voice note, bounded by `timeout_seconds`: a user waits for the answer,
so a slow or failing server costs them a clear note, never a stalled conversation.
"""

from __future__ import annotations

import logging

import httpx

from agents.base import Attachment
from settings import TranscriptionSettings

log = logging.getLogger(__name__)


class TranscriptionFailed(Exception):
    """The server was unreachable, slow, refused the audio or answered nonsense; one line for the logs."""


class Transcriber:
    def __init__(self, settings: TranscriptionSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.url = str(settings.url).rstrip("/") + "/audio/transcriptions"

    async def transcribe(self, audio: Attachment, data: bytes) -> str:
        """The words spoken in `data` (the voice note's bytes), stripped; may be empty for silence."""
        settings = self.settings
        secret = settings.api_key.get_secret_value() if settings.api_key else ""
        fields = {"model": settings.model, "response_format": "json"}
        if settings.language:
            fields["language"] = settings.language
        try:
            response = await self.http.post(
                self.url,
                data=fields,
                files={"file": (audio.name or "voice.ogg", data, audio.mime or "audio/ogg")},
                headers={"Authorization": f"Bearer {secret}"} if secret else {},
                timeout=settings.timeout_seconds,
            )
        except httpx.TimeoutException:
            raise TranscriptionFailed(f"no answer within {settings.timeout_seconds:g}s") from None
        except httpx.HTTPError as exc:
            raise TranscriptionFailed(f"unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise TranscriptionFailed(f"HTTP {response.status_code}")
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError):
            raise TranscriptionFailed("the answer had no text") from None
        if not isinstance(text, str):
            raise TranscriptionFailed("the answer had no text")
        return text.strip()
