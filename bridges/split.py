"""Split a long reply into platform-sized messages at the most natural boundary.

Splitting is greedy and only looks at the first `limit` units of what remains, so once a chunk is full
its cut never moves as more text streams in: a message that was finalised stays final. Each cut depends
only on the text from the previous cut on, so a streaming caller can keep the full chunks and re-split
just the rest, and the work stays linear in the length of the reply.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

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
    """Chunks whose concatenation is exactly `text`, each measuring at most `limit`."""
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    chunks: list[str] = []
    start = 0
    while not _fits(text, start, limit, measure):
        window = text[start : start + _fitting_length(text, start, limit, measure)]
        cut = _boundary_cut(window) or _grapheme_safe_cut(text, start, start + len(window)) - start
        chunks.append(text[start : start + cut])
        start += cut
    chunks.append(text[start:])
    return chunks


def _fits(text: str, start: int, limit: int, measure: Measure) -> bool:
    """Whether text[start:] fits, measuring at most `limit` characters of it (never the whole reply)."""
    return len(text) - start <= limit and measure(text[start:]) <= limit


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
