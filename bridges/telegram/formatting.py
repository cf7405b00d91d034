"""Agent markdown to Telegram text plus message entities, with the agent's own text as the fallback.

Entities (offsets into plain text) rather than a parse mode: there is no markup for Telegram to
reject, so a half-streamed `**bold` or an unclosed code fence is simply shown as typed until it closes,
and escaping mistakes cannot happen. telegramify-markdown does the conversion. It drops inline HTML,
which would silently lose text such as "use the <div> tag", so those `<` are escaped first and shown
literally. If Telegram still refuses the entities, the surface resends the agent's text as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pyromark
import telegramify_markdown
from telegram import MessageEntity
from telegramify_markdown.converter import STANDARD_OPTIONS

from bridges.split import utf16_length

log = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CAPTION = 1024
_HTML_EVENTS = ("InlineHtml", "Html")


@dataclass(frozen=True)
class Formatted:
    """Text and entities as the Bot API takes them; equal exactly when Telegram would show the same."""

    text: str
    entities: tuple[dict[str, Any], ...] = ()

    def message_entities(self) -> list[MessageEntity] | None:
        return [MessageEntity.de_json(entity, None) for entity in self.entities] or None


def plain(text: str, limit: int = MAX_TEXT) -> Formatted:
    """The text as typed, cut to `limit` UTF-16 units (the renderer already keeps messages below it)."""
    if utf16_length(text) <= limit:
        return Formatted(text)
    cut = limit - 1
    while utf16_length(text[:cut]) > limit - 1:
        cut -= 1
    return Formatted(text[:cut] + "…")


def to_telegram(markdown: str, limit: int = MAX_TEXT) -> Formatted:
    """Rendered text and entities, or the plain text when rendering would be empty or too long."""
    try:
        text, entities = telegramify_markdown.convert(_keep_html_literal(markdown))
    except Exception:  # a converter bug must never cost the user the reply
        log.exception("markdown conversion failed; sending plain text")
        return plain(markdown, limit)
    if not text.strip() or utf16_length(text) > limit:
        return plain(markdown, limit)
    return Formatted(text, tuple(_collapsible(e.to_dict()) for e in entities if _harmless(e.to_dict())))


def _collapsible(entity: dict[str, Any]) -> dict[str, Any]:
    """A quote (what was heard in a voice note, a quoted passage) collapses to a few lines, which the
    reader can expand."""
    return {**entity, "type": "expandable_blockquote"} if entity.get("type") == "blockquote" else entity


def _harmless(entity: dict[str, Any]) -> bool:
    """Links only to web pages: a `tg://user?id=N` link is an inline mention that notifies user N (an
    agent must never ping anyone), and other schemes are refused by Telegram or worse. The link's text
    stays; only the link goes."""
    if entity.get("type") != "text_link":
        return True
    return str(entity.get("url", "")).lower().startswith(("http://", "https://"))


def _keep_html_literal(markdown: str) -> str:
    """Backslash-escape each `<` the parser would read as HTML, so it is shown instead of dropped."""
    if "<" not in markdown:
        return markdown
    data = markdown.encode()
    cuts = sorted(
        {
            span["start"] + index
            for payload, span in pyromark.events_with_range(markdown, options=STANDARD_OPTIONS)
            if isinstance(payload, dict) and any(key in payload for key in _HTML_EVENTS)
            for index, byte in enumerate(data[span["start"] : span["end"]])
            if byte == ord("<")
        }
    )
    if not cuts:
        return markdown
    pieces, previous = [], 0
    for cut in cuts:
        pieces += [data[previous:cut], b"\\"]
        previous = cut
    pieces.append(data[previous:])
    return b"".join(pieces).decode()
