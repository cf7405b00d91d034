"""Split a long reply into platform-sized messages at the most natural boundary.

Splitting is greedy and only looks at the first `limit` units of what remains, so once a chunk is full
its cut never moves as more text streams in: a message that was finalised stays final. Each cut depends
only on the text from the previous cut on, so a streaming caller can keep the full chunks and re-split
just the rest, and the work stays linear in the length of the reply.

A cut inside a ``` code fence would leave two broken blocks, so such a chunk ends with a closing fence
and the next starts by reopening it with the same language. Those added lines are the only difference
between the chunks and the text; the rest of the reply is split as `reopen + rest`, so a caller that
keeps the full chunks and re-splits the last one still gets the same cuts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

Measure = Callable[[str], int]
"""Length in the platform's units: grows with the text, by at least one unit per character."""

# Cut after these, best first. A cut is only taken if it keeps the chunk at least this full.
_BOUNDARIES: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(r"\n[ \t]*\n\s*"), 0.5),  # paragraph
    (re.compile(r"\n\s*"), 0.5),  # line
    (re.compile(r"(?<=[.!?…。\uff01\uff1f])[\"'\u201d\u2019)\]]*\s+"), 0.5),  # sentence
    (re.compile(r"[ \t]+"), 0.3),  # word
)

_ZWJ = "\u200d"


def utf16_length(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, measure: Measure = len) -> list[str]:
    """Chunks each measuring at most `limit`, whose concatenation is `text` plus the fence lines that
    close a code block at a cut and reopen it after (see the module docstring)."""
    return [chunk.reopening + chunk.body + chunk.closing for chunk in split_chunks(text, limit, measure)]


class Chunk(NamedTuple):
    reopening: str
    """A fence line reopening the code block the previous chunk closed, or ""."""
    body: str
    """The text's own characters: the bodies concatenate to the text."""
    closing: str
    """The fence closing a code block cut at this chunk's end, or ""."""


def split_chunks(text: str, limit: int, measure: Measure = len) -> list[Chunk]:
    """`split_text` with the added fence lines kept apart from the text."""
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    chunks: list[Chunk] = []
    reopening, start = "", 0
    while len(reopening) + len(text) - start > limit or measure(reopening + text[start:]) > limit:
        window = reopening + text[start : start + limit + 1 - len(reopening)]  # each cut depends on these
        cut, fence = _fenced_cut(window, limit, measure)
        closing = _closing(window[:cut], fence) if fence else ""
        chunks.append(Chunk(reopening, window[len(reopening) : cut], closing))
        start += cut - len(reopening)
        reopening = fence.reopening(limit) if fence else ""
    chunks.append(Chunk(reopening, text[start:], ""))
    return chunks


@dataclass(frozen=True)
class _Fence:
    """An open ``` block: how many backticks opened it and its language."""

    ticks: int
    language: str

    def reopening(self, limit: int) -> str:
        line = "`" * self.ticks + self.language + "\n"
        return line if len(line) <= limit // 4 else "`" * self.ticks + "\n"  # never crowd out the text


def _fenced_cut(window: str, limit: int, measure: Measure) -> tuple[int, _Fence | None]:
    """The cut for `window` and the fence open there; inside a fence, room is kept for closing it. A
    fence whose markers would take over a quarter of the message is left as it is."""
    room = limit
    while True:
        fitting = window[: _fitting_length(window, 0, room, measure)]
        cut = _boundary_cut(fitting) or _grapheme_safe_cut(window, _reopened_length(window), len(fitting))
        cut = _keep_fence_markers(window, cut)
        fence = _open_fence(window[:cut])
        if fence is None:
            return cut, None
        cut = _keep_indentation(window, cut)
        closing = measure(_closing(window[:cut], fence))
        if closing > limit // 4:
            return cut, None
        if measure(window[:cut]) + closing <= limit:
            return cut, fence
        room = min(room - 1, limit - closing)


def _keep_indentation(text: str, cut: int) -> int:
    """In code, a cut after a line's leading whitespace would move that indentation to the line before."""
    line_start = text.rfind("\n", 0, cut) + 1
    return line_start if line_start > _reopened_length(text) and not text[line_start:cut].strip() else cut


def _closing(chunk: str, fence: _Fence) -> str:
    return ("" if chunk.endswith("\n") else "\n") + "`" * fence.ticks


_FENCE_LINE = re.compile(r" {0,3}(`{3,})([^`]*)")


def _open_fence(text: str) -> _Fence | None:
    """The fence still open after the complete lines of `text` (CommonMark's backtick fences)."""
    fence: _Fence | None = None
    for line in text.split("\n")[:-1]:
        match = _FENCE_LINE.fullmatch(line)
        if match is None:
            continue
        ticks, info = len(match[1]), match[2].strip()
        if fence is None:
            fence = _Fence(ticks, info.split()[0] if info else "")
        elif ticks >= fence.ticks and not info:
            fence = None
    return fence


def _keep_fence_markers(text: str, cut: int) -> int:
    """Move a cut so that it neither splits a line of backticks (a fence being opened or closed) nor
    starts the next message with backticks taken from the middle of a line, which would read as a fence
    there. Never back past a fence line the chunk was reopened with."""
    floor = _reopened_length(text)
    line_start = text.rfind("\n", 0, cut) + 1
    if cut == line_start:
        return cut
    if set(text[line_start:cut].lstrip(" ")[:3]) == {"`"} and line_start > floor:
        return line_start
    while cut > max(floor, line_start) + 1 and text[cut : cut + 4].lstrip(" ").startswith("`"):
        cut -= 1
    return _grapheme_safe_cut(text, floor, cut)


def _reopened_length(text: str) -> int:
    """Length of a leading fence line (a chunk that reopens a fence starts with one): cuts go after it."""
    return text.find("\n") + 1 if _FENCE_LINE.match(text) else 0


def natural_end(text: str, end: int) -> int:
    """Where to stop `text` when only text[:end] may be shown: after the last paragraph, line, sentence
    or word boundary that keeps enough of it, else at `end`, never inside a grapheme. The character after
    `end`, when there is one, shows whether a word or a grapheme goes on."""
    if end >= len(text):
        return len(text)
    cut = _boundary_cut(text[: end + 1])
    return min(cut, end) if cut else _grapheme_safe_cut(text, 0, end)


def _fitting_length(text: str, start: int, limit: int, measure: Measure) -> int:
    """Longest prefix of text[start:] that measures at most `limit` (measure grows with length)."""
    if measure is len:
        return limit
    low, high = 0, min(len(text) - start, limit)
    while low < high:
        mid = (low + high + 1) // 2
        if measure(text[start : start + mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


def _boundary_cut(window: str) -> int:
    for pattern, min_fill in _BOUNDARIES:
        floor = int(len(window) * min_fill)
        best = 0
        for match in pattern.finditer(window):
            if match.start() >= floor:
                best = match.end()
        if best:
            return best
    return 0


def _grapheme_safe_cut(text: str, start: int, index: int) -> int:
    """Move a hard cut at `index` left until it does not break an emoji sequence, a flag or a combining mark.

    Only characters up to `index` (inclusive) are looked at, and they exist already, so the cut is stable.
    """
    floor = max(start + 1, index - 32)
    cut = index
    while cut > floor and _joins_previous(text, cut):
        cut -= 1
    if _regional_indicators_before(text, start, cut) % 2 == 1 and cut - 1 > start:
        cut -= 1
    return cut


def _joins_previous(text: str, index: int) -> bool:
    if index >= len(text):
        return False
    char, previous = text[index], text[index - 1]
    return (
        char == _ZWJ
        or previous == _ZWJ
        or unicodedata.category(char) in {"Mn", "Me", "Mc"}
        or "\ufe00" <= char <= "\ufe0f"  # variation selectors
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # skin tones
        or "\U000e0020" <= char <= "\U000e007f"  # tag sequences (subdivision flags)
        or char == "\u20e3"  # keycap
        or "\udc00" <= char <= "\udfff"  # a lone low surrogate, should one ever appear
    )


def _regional_indicators_before(text: str, start: int, index: int) -> int:
    """Flag halves in the run ending at `index`, counted from `start` at the earliest (every earlier cut
    left an even number of them behind it, so the parity is the same)."""
    count = 0
    while index - count - 1 >= start and "\U0001f1e6" <= text[index - count - 1] <= "\U0001f1ff":
        count += 1
    if count and index < len(text) and "\U0001f1e6" <= text[index] <= "\U0001f1ff":
        return count
    return 0
