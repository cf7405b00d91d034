"""How the Bot API reads a message's formatting: `entities`, or `parse_mode` HTML / MarkdownV2.

Each reader returns the visible text and its entities, or raises `BadRequest` with the description
Telegram gives ("can't parse entities: ..."), so a bridge that sends broken markup fails here as it
would in production. Offsets and lengths are UTF-16 code units, as in the real API.
"""

from __future__ import annotations

import html
import re
from typing import Any

ENTITY_TYPES = frozenset(
    {
        "mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number", "bold", "italic",
        "underline", "strikethrough", "spoiler", "blockquote", "expandable_blockquote", "code", "pre",
        "text_link", "text_mention", "custom_emoji", "date_time",
    }
)  # fmt: skip
LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")
HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
}  # fmt: skip
MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")


class BadRequest(Exception):
    """A 400 from the Bot API; the message is the description after "Bad Request: "."""


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def read(text: str, parse_mode: str | None, entities: list[dict[str, Any]] | None) -> tuple[str, list[Any]]:
    if parse_mode and entities:
        raise BadRequest("can't parse entities: parse_mode and entities are mutually exclusive")
    if parse_mode is None or parse_mode == "":
        check_entities(text, entities or [])
        return text, list(entities or [])
    mode = parse_mode.lower()
    if mode == "html":
        return read_html(text)
    if mode == "markdownv2":
        return read_markdown_v2(text)
    raise BadRequest(f"unsupported parse_mode {parse_mode!r}")


def check_entities(text: str, entities: list[dict[str, Any]]) -> None:
    size = utf16_length(text)
    for entity in entities:
        kind, offset, length = entity.get("type"), entity.get("offset"), entity.get("length")
        if kind not in ENTITY_TYPES:
            raise BadRequest(f"can't parse entities: unsupported entity type {kind!r}")
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length <= 0:
            raise BadRequest("can't parse entities: wrong entity offset or length")
        if offset + length > size:
            raise BadRequest(f"can't parse entities: entity beyond the end of the text at offset {offset}")
        if kind == "text_link" and not str(entity.get("url", "")).lower().startswith(LINK_SCHEMES):
            raise BadRequest("can't parse entities: unsupported URL protocol")


_HTML_TOKEN = re.compile(r"<(/?)([a-zA-Z][\w-]*)([^<>]*)>|<|&(#\d+|#x[0-9a-fA-F]+|lt|gt|amp|quot);|&")


def read_html(source: str) -> tuple[str, list[Any]]:
    """Telegram's HTML: a fixed set of tags, properly nested, and only four named character entities."""
    visible: list[str] = []
    stack: list[tuple[str, int, dict[str, Any]]] = []
    entities: list[dict[str, Any]] = []
    position = 0
    for match in _HTML_TOKEN.finditer(source):
        visible.append(source[position : match.start()])
        position = match.end()
        byte_offset = len(source[: match.start()].encode())
        token = match.group(0)
        if token == "<" or (match.group(2) and match.group(2).lower() not in HTML_TAGS):
            raise BadRequest(
                f'can\'t parse entities: Unsupported start tag "{match.group(2) or ""}" '
                f"at byte offset {byte_offset}"
            )
        if token == "&":
            visible.append("&")  # a bare ampersand is tolerated
            continue
        if token.startswith("&"):
            visible.append(html.unescape(token))
            continue
        closing, tag, attributes = match.group(1), match.group(2).lower(), match.group(3)
        offset = utf16_length("".join(visible))
        if not closing:
            extra: dict[str, Any] = {}
            if tag == "a":
                href = re.search(r"href\s*=\s*\"([^\"]*)\"", attributes)
                if href is None:
                    raise BadRequest(f"can't parse entities: missing href at byte offset {byte_offset}")
                extra["url"] = html.unescape(href.group(1))
            if tag == "blockquote" and re.search(r"\bexpandable\b", attributes):
                extra["type"] = "expandable_blockquote"
            stack.append((tag, offset, extra))
            continue
        if not stack or stack[-1][0] != tag:
            expected = f'"</{stack[-1][0]}>"' if stack else "no end tag"
            raise BadRequest(
                f"can't parse entities: Unmatched end tag at byte offset {byte_offset}, "
                f'expected {expected}, found "</{tag}>"'
            )
        _tag, start, extra = stack.pop()
        if offset > start:
            entities.append({"type": HTML_TAGS[tag], "offset": start, "length": offset - start, **extra})
    if stack:
        raise BadRequest(
            f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1][0]}\""
        )
    visible.append(source[position:])
    text = "".join(visible)
    check_entities(text, entities)
    return text, entities


_MDV2_MARKS = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough", "||": "spoiler"}


def read_markdown_v2(source: str) -> tuple[str, list[Any]]:
    """MarkdownV2: every reserved character outside markup must be escaped, and markup must close."""
    visible: list[str] = []
    stack: list[tuple[str, int, int]] = []
    entities: list[dict[str, Any]] = []
    index = 0
    while index < len(source):
        char = source[index]
        offset = utf16_length("".join(visible))
        byte_offset = len(source[:index].encode())
        if char == "\\" and index + 1 < len(source):
            visible.append(source[index + 1])
            index += 2
            continue
        if char == "`":
            fence = "```" if source.startswith("```", index) else "`"
            end = source.find(fence, index + len(fence))
            if end < 0:
                raise BadRequest(
                    f"can't parse entities: Can't find end of the entity at byte offset {byte_offset}"
                )
            body = re.sub(r"\\([`\\])", r"\1", source[index + len(fence) : end])
            if body:
                entities.append(
                    {
                        "type": "pre" if fence == "```" else "code",
                        "offset": offset,
                        "length": utf16_length(body),
                    }
                )
            visible.append(body)
            index = end + len(fence)
            continue
        mark = source[index : index + 2] if source[index : index + 2] in _MDV2_MARKS else char
        if mark in _MDV2_MARKS:
            if stack and stack[-1][0] == mark:
                _mark, start, _byte = stack.pop()
                if offset > start:
                    entities.append({"type": _MDV2_MARKS[mark], "offset": start, "length": offset - start})
            else:
                stack.append((mark, offset, byte_offset))
            index += len(mark)
            continue
        if char == "[":
            stack.append(("[", offset, byte_offset))
            index += 1
            continue
        if char == "]" and stack and stack[-1][0] == "[" and source.startswith("(", index + 1):
            end = source.find(")", index + 2)
            if end < 0:
                raise BadRequest(
                    f"can't parse entities: Can't find end of a URL at byte offset {byte_offset}"
                )
            _mark, start, _byte = stack.pop()
            entities.append({"type": "text_link", "offset": start, "length": offset - start,
                             "url": source[index + 2 : end]})  # fmt: skip
            index = end + 1
            continue
        if char in MDV2_RESERVED:
            raise BadRequest(
                f"can't parse entities: Character '{char}' is reserved and must be escaped with '\\'"
            )
        visible.append(char)
        index += 1
    if stack:
        raise BadRequest(
            f"can't parse entities: Can't find end of the entity starting at byte offset {stack[-1][2]}"
        )
    text = "".join(visible)
    check_entities(text, entities)
    return text, entities
