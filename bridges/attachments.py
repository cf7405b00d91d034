"""What becomes of the files a user sends, before the agent sees the message.

Two steps, each ending in at most one plain notice for the user:
- `hear`: voice notes are transcribed (when `[transcription]` is configured) and the words become the
  message's text; the user is shown what was heard, as a quote. Without a transcriber, or when it
  fails, the user is told, and any typed text still goes on.
- `offer`: the files the agent takes (`agents.base.MediaSupport`) are downloaded, bounded by its
  limits; every other file is named in one notice with the reason, and the text still goes through.
  Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agents.base import (
    AcceptsMedia,
    Agent,
    Attachment,
    AttachmentBeyondPlatform,
    AttachmentTooLarge,
    AttachmentUnavailable,
    MediaSupport,
)
from bridges.notices import Notices
from bridges.surface import Inbound
from bridges.transcribe import Transcriber, TranscriptionFailed

log = logging.getLogger(__name__)

TEXT_MIMES = ("text/", "application/json", "application/xml", "application/x-yaml", "application/toml")
TEXT_SUFFIXES = (".txt", ".md", ".csv", ".json", ".log", ".py", ".js", ".ts", ".yaml", ".yml", ".toml")
KIND_WORDS = {
    "image": "image",
    "document": "file",
    "audio": "audio file",
    "voice": "voice message",
    "video": "video",
    "sticker": "sticker",
}


class MediaNotices:
    """What the user is told about their files."""

    left_out = "The assistant did not get {items}. {after}"
    after_text = "Your text went through."
    after_nothing = "Please tell me in words what you need."
    takes_none = "it cannot take {kinds}s"
    image_format = "it reads PNG, JPEG, GIF and WebP images only; please send it as one of those"
    too_many = "it takes at most {n} per message"
    too_large = "{size}, over the {limit} it takes"
    unavailable = "it could not be downloaded"
    beyond_platform = "it is over the {limit} this chat lets bots download"
    heard = "🎙️ I heard:\n{quote}"
    heard_nothing = "🎙️ I could not hear any words in your voice message. Please try again or type it."
    cannot_listen = "I can't listen to voice messages here. Please type your message instead."
    voice_too_long = (
        "Your voice message is {seconds:.0f} seconds long; I can listen to {limit:.0f} seconds at most. "
        "Please send a shorter one or type it."
    )
    voice_too_large = "Your voice message is too large for me to listen to. Please send a shorter one."
    voice_failed = (
        "I could not listen to your voice message just now (the transcription service did not answer). "
        "Please try again in a moment or type it."
    )


@dataclass(frozen=True)
class Offer:
    """The files an agent gets (downloaded), and what to tell the user about the rest."""

    attachments: tuple[Attachment, ...]
    notice: str | None
    empty: bool
    """Neither text nor any file to give the agent: there is no turn to take."""


class Media:
    """The two steps, with the transcriber if one is configured."""

    def __init__(self, transcriber: Transcriber | None = None) -> None:
        self.transcriber = transcriber

    async def hear(self, inbound: Inbound) -> tuple[Inbound, str | None]:
        """The message with its voice notes' words as its text (the caption, if any, after them), and
        what to show the user: the words heard, quoted, or why there are none."""
        voices = [a for a in inbound.attachments if a.kind == "voice"]
        if not voices:
            return inbound, None
        if self.transcriber is None:
            return inbound, MediaNotices.cannot_listen
        heard: list[str] = []
        for voice in voices:
            words, problem = await self._transcribe(self.transcriber, voice)
            if problem is not None:
                return inbound, problem
            heard.append(words)
        spoken = "\n".join(words for words in heard if words)
        if not spoken:
            return inbound, MediaNotices.heard_nothing
        text = f"{spoken}\n\n{inbound.text}" if inbound.text.strip() else spoken
        return replace(inbound, text=text), MediaNotices.heard.format(quote=_quoted(spoken))

    async def _transcribe(self, transcriber: Transcriber, voice: Attachment) -> tuple[str, str | None]:
        settings = transcriber.settings
        if voice.duration is not None and voice.duration > settings.max_seconds:
            return "", MediaNotices.voice_too_long.format(seconds=voice.duration, limit=settings.max_seconds)
        if voice.size is not None and voice.size > settings.max_bytes:
            return "", MediaNotices.voice_too_large
        try:
            data = await voice.fetch(settings.max_bytes)
        except (AttachmentTooLarge, AttachmentBeyondPlatform):
            return "", MediaNotices.voice_too_large
        except AttachmentUnavailable as exc:
            log.warning("a voice note could not be downloaded: %s", exc)
            return "", MediaNotices.voice_failed
        try:
            return await transcriber.transcribe(voice, data), None
        except TranscriptionFailed as exc:
            log.warning("transcription failed: %s", exc)
            return "", MediaNotices.voice_failed

    async def offer(self, inbound: Inbound, agent: Agent) -> Offer:
        """Download what `agent` takes, within its limits; name the rest, once. Voice notes went in as
        text (`hear`), and a sticker as its emoji (the bridge makes that its text)."""
        support = agent.media if isinstance(agent, AcceptsMedia) else MediaSupport()
        taken: list[Attachment] = []
        refused: list[tuple[Attachment, str]] = []
        images = texts = 0
        for attachment in inbound.attachments:
            if attachment.kind in ("sticker", "voice"):
                continue
            if (
                attachment.kind == "image"
                and support.max_images
                and attachment.mime.lower() not in support.image_types
            ):
                refused.append((attachment, MediaNotices.image_format))
                continue
            if attachment.kind == "image":
                allowed, limit, count = support.max_images, support.max_image_bytes, images
            elif _is_text(attachment):
                allowed, limit, count = support.max_text_files, support.max_text_bytes, texts
            else:
                allowed, limit, count = 0, 0, 0
            kind = "text file" if _is_text(attachment) else KIND_WORDS[attachment.kind]
            if allowed == 0:
                refused.append((attachment, MediaNotices.takes_none.format(kinds=kind)))
                continue
            if count >= allowed:
                refused.append((attachment, MediaNotices.too_many.format(n=allowed)))
                continue
            loaded, problem = await _fetch(attachment, limit)
            if loaded is None:
                refused.append((attachment, problem))
                continue
            taken.append(loaded)
            if attachment.kind == "image":
                images += 1
            else:
                texts += 1
        has_text = bool(inbound.text.strip()) or inbound.button is not None
        empty = not has_text and not taken
        notice = None
        if refused:
            after = MediaNotices.after_text if has_text else MediaNotices.after_nothing
            notice = MediaNotices.left_out.format(items=_listed(refused), after=after)
        return Offer(tuple(taken), notice, empty)


async def _fetch(attachment: Attachment, limit: int) -> tuple[Attachment | None, str]:
    too_large = MediaNotices.too_large.format(size=_size(attachment.size or 0), limit=_size(limit))
    if attachment.size is not None and attachment.size > limit:
        return None, too_large
    try:
        return attachment.loaded(await attachment.fetch(limit)), ""
    except AttachmentTooLarge:
        return None, too_large
    except AttachmentBeyondPlatform as exc:
        return None, MediaNotices.beyond_platform.format(limit=_size(exc.limit))
    except AttachmentUnavailable as exc:
        log.warning("an attachment could not be downloaded: %s", exc)
        return None, MediaNotices.unavailable


def with_sticker_words(text: str, attachments: Sequence[Attachment]) -> str:
    """A sticker stands for its emoji: what a bridge gives as the message's text, with any typed words."""
    emoji = " ".join(a.emoji for a in attachments if a.kind == "sticker" and a.emoji)
    return f"{text} {emoji}".strip() if emoji else text


def lost_files_notice(metadata: Sequence[Mapping[str, Any]]) -> str:
    """What a user is told of files a restart lost (see `bridges.inbox.LeftOver`), named as they sent them."""
    names = [
        f"your {KIND_WORDS.get(m.get('kind', ''), 'file')} {m.get('name') or ''}".rstrip() for m in metadata
    ]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return Notices.files_lost.format(files=listed, them="it" if len(names) == 1 else "them")


def _is_text(attachment: Attachment) -> bool:
    if attachment.kind != "document":
        return False
    return attachment.mime.startswith(TEXT_MIMES) or attachment.name.lower().endswith(TEXT_SUFFIXES)


def _listed(refused: Sequence[tuple[Attachment, str]]) -> str:
    items = [f"{_label(attachment)} ({why})" for attachment, why in refused]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _label(attachment: Attachment) -> str:
    word = KIND_WORDS[attachment.kind]
    return f"your {word} {attachment.name}" if attachment.name else f"your {word}"


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(size // 1024, 1)} KB"


def _quoted(text: str) -> str:
    """A markdown quote: Discord shows a quote block, Telegram a (collapsible) blockquote."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())
