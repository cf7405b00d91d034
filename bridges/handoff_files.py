"""Files across a handoff, both ways: the user's into the moderators' thread or topic, the moderator's to
the user, whatever platforms each side is on.

Each file is downloaded only up to what the receiving side can upload (Discord 10 MiB without boosts,
Telegram 50 MB), then posted; one that is larger, that its platform will not serve, or that the other
side refuses becomes a short note in its place, so nobody is left thinking it arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.base import (
    Attachment,
    AttachmentBeyondPlatform,
    AttachmentTooLarge,
    AttachmentUnavailable,
)
from bridges.catalogue import Strings
from bridges.surface import SurfaceError

log = logging.getLogger(__name__)


class FileNotices(Strings, key="files"):
    """Said in place of a file that could not be passed on (to moderators, or to the user)."""

    too_large = (
        "📎 {author} sent {name}, which is larger than the {limit} allowed here, so it was not passed on."
    )
    unavailable = "📎 {author} sent {name}, but it could not be downloaded."
    beyond_platform = (
        "📎 {author} sent {name}, which is over the {limit} their chat lets bots download, so it could "
        "not be passed on; a link would get through."
    )
    refused = "📎 {author} sent {name}, but it could not be posted here."
    elsewhere = (
        "📎 {count} file(s) could not be sent: the user's platform is served by another process, "
        "which cannot take files. Please share a link instead."
    )


async def pass_on(
    files: Sequence[Attachment],
    author: str,
    limit: int,
    post: Callable[[Attachment], Awaitable[object]],
    note: Callable[[str], Awaitable[object]],
    say: FileNotices,
) -> None:
    """Post each file (downloaded within `limit` bytes) with `post`, in order; say why not with `note`,
    in the words of `say`."""
    for file in files:
        if file.kind == "sticker":
            continue  # a sticker travels as its emoji, in the text
        name = file.name or f"a {file.kind}"
        try:
            await post(file.loaded(await file.fetch(limit)))
            continue
        except AttachmentTooLarge:
            why = say.too_large.format(author=author, name=name, limit=_size(limit))
        except AttachmentBeyondPlatform as exc:
            why = say.beyond_platform.format(author=author, name=name, limit=_size(exc.limit))
        except AttachmentUnavailable as exc:
            log.warning("a handoff file could not be downloaded: %s", exc)
            why = say.unavailable.format(author=author, name=name)
        except SurfaceError as exc:
            log.warning("a handoff file was refused: %s", exc)
            why = say.refused.format(author=author, name=name)
        await note(why)


def listed(metadata: Sequence[dict[str, Any]] | None) -> str:
    """A transcript line's files, as the transcript file shows them: ` [files: a.png (image, 12 KB)]`."""
    if not metadata:
        return ""
    names = [
        f"{m.get('name') or m.get('emoji') or 'unnamed'} ({m.get('kind')}, {_size_of(m.get('size'))})"
        for m in metadata
    ]
    return f" [files: {', '.join(names)}]"


def _size_of(size: object) -> str:
    if not isinstance(size, int):
        return "size unknown"
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{max(size // 1024, 1)} KB"


def _size(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"
