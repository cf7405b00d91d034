"""Splitting long replies: lossless, within the limit, at natural boundaries, never inside a grapheme."""

from __future__ import annotations

import itertools
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridges.split import natural_end, split_chunks, split_text, utf16_length

FAMILY = "👨\u200d👩\u200d👧\u200d👦"
FLAGS = "🇫🇷🇩🇪🇯🇵"
THUMBS = "👍🏽"
ACCENTED = "e\u0301"  # e + combining acute
KEYCAP = "1\ufe0f\u20e3"
SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
TRICKY = [FAMILY, FLAGS, THUMBS, ACCENTED, KEYCAP, SCOTLAND, "中文", "\u210c", "\u200f", "\u200b"]


def breaks_grapheme(left: str, right: str) -> bool:
    """True if the cut between `left` and `right` splits a user-perceived character."""
    if not left or not right:
        return False
    first, last = right[0], left[-1]
    joins = (
        first == "\u200d"
        or last == "\u200d"
        or unicodedata.category(first) in {"Mn", "Me", "Mc"}
        or "\ufe00" <= first <= "\ufe0f"
        or "\U0001f3fb" <= first <= "\U0001f3ff"
        or "\U000e0020" <= first <= "\U000e007f"
        or first == "\u20e3"
    )
    trailing_indicators = len(left) - len(left.rstrip("".join(chr(c) for c in range(0x1F1E6, 0x1F200))))
    return joins or ("\U0001f1e6" <= first <= "\U0001f1ff" and trailing_indicators % 2 == 1)


def test_short_text_is_one_chunk() -> None:
    assert split_text("hello", 2000) == ["hello"]
    assert split_text("", 2000) == [""]


def test_prefers_paragraph_then_line_then_sentence_then_word() -> None:
    para = "First paragraph here.\n\nSecond one is longer than the rest of it."
    assert split_text(para, 40)[0] == "First paragraph here.\n\n"
    lines = "line one is here\nline two is here\nline three"
    assert split_text(lines, 40)[0] == "line one is here\nline two is here\n"
    sentences = "This first sentence ends. Another sentence goes on and on"
    assert split_text(sentences, 40)[0] == "This first sentence ends. "
    words = "alpha beta gamma delta epsilon zeta eta theta"
    assert split_text(words, 20)[0] == "alpha beta gamma "


def test_ten_thousand_characters_split_under_discord_limit() -> None:
    text = " ".join(f"w{n}" for n in range(2300))  # over 12,000 characters
    assert len(text) > 10_000
    chunks = split_text(text, 2000)
    assert "".join(chunks) == text
    assert all(len(chunk) <= 2000 for chunk in chunks)
    assert all(chunk.endswith(" ") for chunk in chunks[:-1])  # cut between words, not inside one
    assert all(len(chunk) > 1990 for chunk in chunks[:-1])  # full messages, not fragments
    assert len(chunks) == -(-len(text) // 1995)


def test_telegram_limit_counts_utf16_units() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 units, 3,000 code points
    chunks = split_text(text, 4096, utf16_length)
    assert "".join(chunks) == text
    assert [utf16_length(chunk) for chunk in chunks] == [4096, 1904]


def test_unbreakable_text_is_cut_hard() -> None:
    text = "x" * 4500
    assert [len(chunk) for chunk in split_text(text, 2000)] == [2000, 2000, 500]


@pytest.mark.parametrize("cluster", TRICKY)
@pytest.mark.parametrize("offset", range(-8, 3))
def test_hard_cut_never_splits_a_grapheme(cluster: str, offset: int) -> None:
    text = "a" * (40 + offset) + cluster * 6 + "b" * 50
    chunks = split_text(text, 40)
    assert "".join(chunks) == text
    for left, right in itertools.pairwise(chunks):
        assert not breaks_grapheme(left, right), (left[-4:], right[:4])


def test_flags_are_cut_between_pairs() -> None:
    text = "a" * 37 + "🇫🇷🇩🇪🇯🇵🇮🇹" + "b" * 60
    for chunk in split_text(text, 40)[1:]:
        indicators = sum("\U0001f1e6" <= char <= "\U0001f1ff" for char in chunk)
        assert indicators % 2 == 0


def test_limit_must_be_sensible() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 3)


alphabet = st.sampled_from([*"ab .!?\n", "\n\n", "  ", *TRICKY, "😀", "ß"])
texts = st.lists(alphabet, max_size=400).map("".join)


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(min_value=16, max_value=120), st.booleans())
def test_split_is_lossless_bounded_and_grapheme_safe(text: str, limit: int, utf16: bool) -> None:
    measure = utf16_length if utf16 else len
    chunks = split_text(text, limit, measure)
    assert "".join(chunks) == text
    assert all(measure(chunk) <= limit for chunk in chunks)
    assert all(chunks[:-1])  # no empty chunk except for empty text
    for left, right in itertools.pairwise(chunks):
        assert not breaks_grapheme(left, right)


@settings(max_examples=300, deadline=None)
@given(texts, texts, st.integers(min_value=16, max_value=120))
def test_full_chunks_never_move_as_text_streams_in(prefix: str, more: str, limit: int) -> None:
    """Every chunk but the last is final: appending text may only change the last one."""
    before = split_text(prefix, limit)
    after = split_text(prefix + more, limit)
    assert after[: len(before) - 1] == before[:-1]


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(min_value=16, max_value=120), st.booleans())
def test_the_rest_splits_alike_on_its_own(text: str, limit: int, utf16: bool) -> None:
    """Each cut depends only on the text from the previous cut on, so a streaming caller may keep the full
    chunks and split only what follows them."""
    measure = utf16_length if utf16 else len
    first, *rest = split_text(text, limit, measure)
    if rest:
        assert split_text(text[len(first) :], limit, measure) == rest


def test_splitting_work_grows_linearly_with_the_text() -> None:
    """Never measures all of what remains per chunk: that made a 400 kB reply cost seconds of CPU."""

    def measured(text: str) -> int:
        count = 0

        def counting(piece: str) -> int:
            nonlocal count
            count += len(piece)
            return utf16_length(piece)

        assert "".join(split_text(text, 4096, counting)) == text
        return count

    line = "Lorem ipsum dolor sit amet, 😀 consectetur adipiscing elit. "
    small, large = measured(line * 1000), measured(line * 4000)  # 59,000 and 236,000 characters
    assert large < 5 * small, (small, large)


@pytest.mark.parametrize(
    ("text", "end", "kept"),
    [
        ("One sentence. Another one follows here", 22, "One sentence. "),
        ("line one\nline two goes on", 15, "line one\n"),
        ("alpha beta gamma delta", 13, "alpha beta "),
        ("x" * 50, 20, "x" * 20),
        ("a" * 20 + ACCENTED * 5, 21, "a" * 20),  # the accent after the cut belongs to the "e"
        ("a" * 20 + FAMILY, 23, "a" * 20),
        ("short", 10, "short"),
    ],
)
def test_natural_end_backs_off_to_a_boundary(text: str, end: int, kept: str) -> None:
    assert text[: natural_end(text, end)] == kept


def open_fence_after(text: str) -> str | None:
    """The opening line of the ``` block left open by `text`'s complete lines (the test alphabet only has
    plain fences: a line of three backticks, with a language or without)."""
    opened: str | None = None
    for line in text.split("\n")[:-1]:
        marker = line.lstrip(" ")
        if marker.startswith("```") and len(line) - len(marker) <= 3:
            opened = None if opened is not None and marker.strip() == "```" else opened or marker
    return opened


def test_a_cut_inside_a_fence_closes_it_and_reopens_it_with_its_language() -> None:
    code = "".join(f"print({n})\n" for n in range(12))
    text = f"Here is the fix:\n```python\n{code}```\nThat is all."
    chunks = split_text(text, 60)
    assert len(chunks) > 2
    assert chunks[0] == "Here is the fix:\n```python\nprint(0)\nprint(1)\nprint(2)\n```"
    assert chunks[1].startswith("```python\nprint(3)\n")
    for chunk in chunks[:-1]:
        assert open_fence_after(chunk + "\n") is None, chunk
    assert chunks[-2].endswith("print(11)\n```\n")
    assert chunks[-1] == "That is all."


def test_a_fence_marker_is_never_cut_in_two() -> None:
    text = "x" * 57 + "\n```python\nprint(1)\n```\n"
    first, second = split_text(text, 60)
    assert first == "x" * 57 + "\n"
    assert second.startswith("```python\n")


fenced = st.sampled_from(["```python\n", "```\n", "```js\n", "code();", " ", "\n", "ab", "😀", "x" * 9])
fenced_texts = st.lists(fenced, max_size=300).map("".join)


@settings(max_examples=300, deadline=None)
@given(fenced_texts, st.integers(min_value=16, max_value=120), st.booleans())
def test_fenced_split_is_lossless_bounded_and_balanced(text: str, limit: int, utf16: bool) -> None:
    """The bodies concatenate to the text; each message but the last leaves no block open, and one that
    continues a block reopens it with the language it was opened with."""
    measure = utf16_length if utf16 else len
    chunks = split_chunks(text, limit, measure)
    assert "".join(chunk.body for chunk in chunks) == text
    assert split_text(text, limit, measure) == ["".join(chunk) for chunk in chunks]
    shown = ""
    for chunk in chunks:
        message = "".join(chunk)
        assert measure(message) <= limit
        opened = open_fence_after(shown)
        # the language goes too unless it would crowd a tiny message
        assert chunk.reopening in ({opened + "\n", "```\n"} if opened else {""})
        if chunk is not chunks[-1]:
            assert open_fence_after(message + "\n") is None, message
        shown += chunk.body


@settings(max_examples=300, deadline=None)
@given(fenced_texts, fenced_texts, st.integers(min_value=16, max_value=120))
def test_fenced_chunks_never_move_as_text_streams_in(prefix: str, more: str, limit: int) -> None:
    before = split_text(prefix, limit)
    after = split_text(prefix + more, limit)
    assert after[: len(before) - 1] == before[:-1]


@settings(max_examples=300, deadline=None)
@given(fenced_texts, st.integers(min_value=16, max_value=120))
def test_the_rest_of_a_fenced_text_splits_alike_on_its_own(text: str, limit: int) -> None:
    """What the renderer relies on: the rest, reopened, splits into the same messages."""
    first, *rest = split_chunks(text, limit)
    if rest:
        assert split_text(rest[0].reopening + text[len(first.body) :], limit) == ["".join(c) for c in rest]
