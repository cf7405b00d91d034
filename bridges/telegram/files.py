"""Telegram files as neutral `Attachment`s, and neutral files as Telegram uploads.

A bot downloads a file in two steps: getFile (which refuses files over 20 MB, "file is too big") and the
download from the file URL. Each file states its size, so one over the caller's limit is refused before
either step. Uploads go as documents (photos as photos), up to the Bot API's 50 MB.
"""

from __future__ import annotations

from telegram import Bot, InputFile, Message
from telegram.error import TelegramError
from telegram.ext import filters

from agents.base import (
    Attachment,
    AttachmentBeyondPlatform,
    AttachmentKind,
    AttachmentTooLarge,
    AttachmentUnavailable,
)

DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""The largest file the Bot API lets a bot download."""
UPLOAD_LIMIT = 50 * 1024 * 1024
"""The largest file the Bot API lets a bot send."""
MESSAGES = (
    filters.TEXT
    | filters.PHOTO
    | filters.Document.ALL
    | filters.VOICE
    | filters.AUDIO
    | filters.VIDEO
    | filters.VIDEO_NOTE
    | filters.ANIMATION
    | filters.Sticker.ALL
)
"""What a user may send the agent: text, or a file with its caption."""


def attachments_of(message: Message) -> tuple[Attachment, ...]:
    """The message's file (Telegram sends at most one per message; an album arrives as several)."""
    bot = message.get_bot()
    if message.photo:
        photo = message.photo[-1]  # the largest size
        return (_attachment(bot, photo.file_id, "image", "image/jpeg", photo.file_size, "photo.jpg"),)
    if (document := message.document) is not None:
        mime = document.mime_type or ""
        kind: AttachmentKind = "image" if mime.startswith("image/") else "document"
        name = document.file_name or "file"
        return (_attachment(bot, document.file_id, kind, mime, document.file_size, name),)
    if (voice := message.voice) is not None:
        mime = voice.mime_type or "audio/ogg"
        return (_attachment(bot, voice.file_id, "voice", mime, voice.file_size, "voice.ogg", voice.duration),)
    if (audio := message.audio) is not None:
        name, mime = audio.file_name or "audio", audio.mime_type or ""
        return (_attachment(bot, audio.file_id, "audio", mime, audio.file_size, name, audio.duration),)
    for video in (message.video, message.video_note, message.animation):
        if video is not None:
            name = getattr(video, "file_name", None) or "video.mp4"
            mime = getattr(video, "mime_type", None) or "video/mp4"
            return (_attachment(bot, video.file_id, "video", mime, video.file_size, name, video.duration),)
    if (sticker := message.sticker) is not None:
        return (
            Attachment(kind="sticker", mime="", size=sticker.file_size, name="", emoji=sticker.emoji or ""),
        )
    return ()


def upload(attachment: Attachment) -> InputFile:
    return InputFile(attachment.data or b"", filename=attachment.name or "file")


def _attachment(
    bot: Bot,
    file_id: str,
    kind: AttachmentKind,
    mime: str,
    size: int | None,
    name: str,
    duration: object = None,
) -> Attachment:
    async def fetch(max_bytes: int) -> bytes:
        if size is not None and size > max_bytes:
            raise AttachmentTooLarge(f"{size} bytes, over {max_bytes}")
        try:
            file = await bot.get_file(file_id)
            if file.file_size is not None and file.file_size > max_bytes:
                raise AttachmentTooLarge(f"{file.file_size} bytes, over {max_bytes}")
            data = bytes(await file.download_as_bytearray())
        except TelegramError as exc:
            if "file is too big" in exc.message.lower():
                raise AttachmentBeyondPlatform("over telegram's download limit", DOWNLOAD_LIMIT) from None
            raise AttachmentUnavailable(f"telegram would not serve it: {exc.message}") from None
        if len(data) > max_bytes:
            raise AttachmentTooLarge(f"{len(data)} bytes, over {max_bytes}")
        return data

    seconds = _seconds(duration)
    return Attachment(kind=kind, mime=mime, size=size, name=name, fetch=fetch, duration=seconds)


def _seconds(duration: object) -> float | None:
    """PTB gives durations as int seconds or as a timedelta, depending on its settings."""
    if duration is None:
        return None
    total = getattr(duration, "total_seconds", None)
    return float(total()) if callable(total) else float(duration)  # type: ignore[arg-type]
