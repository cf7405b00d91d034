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
from bridges.catalogue import Phrasebook, Strings
from bridges.notices import Notices
from bridges.surface import Inbound
from bridges.transcribe import Transcriber, TranscriptionFailed

log = logging.getLogger(__name__)

TEXT_MIMES = ("text/", "application/json", "application/xml", "application/x-yaml", "application/toml")
TEXT_SUFFIXES = (".txt", ".md", ".csv", ".json", ".log", ".py", ".js", ".ts", ".yaml", ".yml", ".toml")


class MediaNotices(Strings, key="media"):
    """What the user is told about their files."""

    left_out = "The assistant did not get {items}. {after}"
    after_text = "Your text went through."
    after_nothing = "Please tell me in words what you need."
    takes_none = "it cannot take {kinds}"
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
    your = "your {kind}"
    your_named = "your {kind} {name}"
    listed = "{items} and {last}"
    kind_image = "image"
    kind_document = "file"
    kind_text = "text file"
    kind_audio = "audio file"
    kind_voice = "voice message"
    kind_video = "video"
    kind_sticker = "sticker"
    kinds_image = "images"
    kinds_document = "files"
    kinds_text = "text files"
    kinds_audio = "audio files"
    kinds_video = "videos"


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

    @staticmethod
    def must_hear(inbound: Inbound) -> bool:
        """Whether `hear` has work to do (or a notice to send) for the message before its turn starts."""
        return any(a.kind == "voice" for a in inbound.attachments)

    async def hear(self, inbound: Inbound, words: Phrasebook) -> tuple[Inbound, str | None]:
        """The message with its voice notes' words as its text (the caption, if any, after them), and
        what to show the user (in `words`' language): the words heard, quoted, or why there are none."""
        say = words(MediaNotices)
        if not self.must_hear(inbound):
            return inbound, None
        voices = [a for a in inbound.attachments if a.kind == "voice"]
        if self.transcriber is None:
            return inbound, say.cannot_listen
        heard: list[str] = []
        for voice in voices:
            spoken, problem = await self._transcribe(self.transcriber, voice, say)
            if problem is not None:
                return inbound, problem
            heard.append(spoken)
        spoken = "\n".join(part for part in heard if part)
        if not spoken:
            return inbound, say.heard_nothing
        text = f"{spoken}\n\n{inbound.text}" if inbound.text.strip() else spoken
        return replace(inbound, text=text), say.heard.format(quote=_quoted(spoken))

    async def _transcribe(
        self, transcriber: Transcriber, voice: Attachment, say: MediaNotices
    ) -> tuple[str, str | None]:
        settings = transcriber.settings
        if voice.duration is not None and voice.duration > settings.max_seconds:
            return "", say.voice_too_long.format(seconds=voice.duration, limit=settings.max_seconds)
        if voice.size is not None and voice.size > settings.max_bytes:
            return "", say.voice_too_large
        try:
            data = await voice.fetch(settings.max_bytes)
        except (AttachmentTooLarge, AttachmentBeyondPlatform):
            return "", say.voice_too_large
        except AttachmentUnavailable as exc:
            log.warning("a voice note could not be downloaded: %s", exc)
            return "", say.voice_failed
        try:
            return await transcriber.transcribe(voice, data), None
        except TranscriptionFailed as exc:
            log.warning("transcription failed: %s", exc)
            return "", say.voice_failed

    async def offer(self, inbound: Inbound, agent: Agent, words: Phrasebook) -> Offer:
        """Download what `agent` takes, within its limits; name the rest, once, in `words`' language.
        Voice notes went in as text (`hear`), and a sticker as its emoji (the bridge makes that its
        text)."""
        say = words(MediaNotices)
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
                refused.append((attachment, say.image_format))
                continue
            if attachment.kind == "image":
                allowed, limit, count = support.max_images, support.max_image_bytes, images
            elif _is_text(attachment):
                allowed, limit, count = support.max_text_files, support.max_text_bytes, texts
            else:
                allowed, limit, count = 0, 0, 0
            if allowed == 0:
                refused.append((attachment, say.takes_none.format(kinds=_kinds(say, attachment))))
                continue
            if count >= allowed:
                refused.append((attachment, say.too_many.format(n=allowed)))
                continue
            loaded, problem = await _fetch(attachment, limit, say)
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
            after = say.after_text if has_text else say.after_nothing
            items = [f"{_label(say, attachment)} ({why})" for attachment, why in refused]
            notice = say.left_out.format(items=_listed(say, items), after=after)
        return Offer(tuple(taken), notice, empty)


async def _fetch(attachment: Attachment, limit: int, say: MediaNotices) -> tuple[Attachment | None, str]:
    too_large = say.too_large.format(size=_size(attachment.size or 0), limit=_size(limit))
    if attachment.size is not None and attachment.size > limit:
        return None, too_large
    try:
        return attachment.loaded(await attachment.fetch(limit)), ""
    except AttachmentTooLarge:
        return None, too_large
    except AttachmentBeyondPlatform as exc:
        return None, say.beyond_platform.format(limit=_size(exc.limit))
    except AttachmentUnavailable as exc:
        log.warning("an attachment could not be downloaded: %s", exc)
        return None, say.unavailable


def with_sticker_words(text: str, attachments: Sequence[Attachment]) -> str:
    """A sticker stands for its emoji: what a bridge gives as the message's text, with any typed words."""
    emoji = " ".join(a.emoji for a in attachments if a.kind == "sticker" and a.emoji)
    return f"{text} {emoji}".strip() if emoji else text


def lost_files_notice(metadata: Sequence[Mapping[str, Any]], words: Phrasebook) -> str:
    """What a user is told of files a restart lost (see `bridges.inbox.LeftOver`), named as they sent them."""
    say = words(MediaNotices)
    names = [_named(say, _kind(say, m.get("kind", "")), m.get("name") or "") for m in metadata]
    notice = words(Notices).file_lost if len(names) == 1 else words(Notices).files_lost
    return notice.format(files=_listed(say, names))


def _is_text(attachment: Attachment) -> bool:
    if attachment.kind != "document":
        return False
    return attachment.mime.startswith(TEXT_MIMES) or attachment.name.lower().endswith(TEXT_SUFFIXES)


def _listed(say: MediaNotices, items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else say.listed.format(items=", ".join(items[:-1]), last=items[-1])


def _label(say: MediaNotices, attachment: Attachment) -> str:
    return _named(say, _kind(say, attachment.kind), attachment.name)


def _named(say: MediaNotices, kind: str, name: str) -> str:
    return say.your_named.format(kind=kind, name=name) if name else say.your.format(kind=kind)


def _kind(say: MediaNotices, kind: str) -> str:
    """A file's kind in words, as the user sent it."""
    words = {
        "image": say.kind_image,
        "audio": say.kind_audio,
        "voice": say.kind_voice,
        "video": say.kind_video,
        "sticker": say.kind_sticker,
    }
    return words.get(kind, say.kind_document)


def _kinds(say: MediaNotices, attachment: Attachment) -> str:
    """What an agent takes none of, in the plural."""
    if _is_text(attachment):
        return say.kinds_text
    words = {"image": say.kinds_image, "audio": say.kinds_audio, "video": say.kinds_video}
    return words.get(attachment.kind, say.kinds_document)


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(size // 1024, 1)} KB"


def _quoted(text: str) -> str:
    """A markdown quote: Discord shows a quote block, Telegram a (collapsible) blockquote."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())
