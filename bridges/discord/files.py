"""Discord attachments as neutral `Attachment`s, and neutral files as Discord uploads.

A Discord attachment states its size, so a file over the caller's limit is refused before a byte is
downloaded; the bytes come from the CDN link Discord gives (discord.py's `Attachment.read`). Uploads are
bounded by `upload_limit` (10 MiB for a server without boosts, the default).
"""

from __future__ import annotations

import io

import aiohttp
import discord

from agents.base import Attachment, AttachmentKind, AttachmentTooLarge, AttachmentUnavailable

UPLOAD_LIMIT = 10 * 1024 * 1024
"""Discord's upload limit without boosts (the default of `upload_limit`)."""


def attachments_of(message: discord.Message) -> tuple[Attachment, ...]:
    """The message's files in Discord's order, then its stickers (as their name, Discord has no emoji
    for them)."""
    files = tuple(_attachment(item) for item in message.attachments)
    stickers = tuple(
        Attachment(kind="sticker", mime="", size=None, name=sticker.name, emoji=f":{sticker.name}:")
        for sticker in message.stickers
    )
    return files + stickers


def upload(attachment: Attachment) -> discord.File:
    """A loaded attachment as a file discord.py uploads."""
    return discord.File(io.BytesIO(attachment.data or b""), filename=attachment.name or "file")


def _attachment(item: discord.Attachment) -> Attachment:
    async def fetch(max_bytes: int) -> bytes:
        if item.size > max_bytes:
            raise AttachmentTooLarge(f"{item.size} bytes, over {max_bytes}")
        try:
            data = await item.read()
        except discord.HTTPException as exc:
            raise AttachmentUnavailable(f"discord CDN answered {exc.status}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AttachmentUnavailable(f"discord CDN unreachable: {type(exc).__name__}") from None
        if len(data) > max_bytes:
            raise AttachmentTooLarge(f"{len(data)} bytes, over {max_bytes}")
        return data

    mime = (item.content_type or "").split(";")[0].strip()
    return Attachment(
        kind=_kind(item, mime),
        mime=mime,
        size=item.size,
        name=item.filename,
        fetch=fetch,
        duration=item.duration,
    )


def _kind(item: discord.Attachment, mime: str) -> AttachmentKind:
    if item.is_voice_message():
        return "voice"
    major = mime.partition("/")[0]
    kinds: dict[str, AttachmentKind] = {"image": "image", "audio": "audio", "video": "video"}
    return kinds.get(major, "document")
