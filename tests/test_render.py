"""The streaming renderer under pressure: storms, long replies, unicode cuts, failing platforms."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Iterable

import pytest

from agents.base import (
    AgentEvent,
    AgentUnavailable,
    Button,
    Buttons,
    HandoffRequested,
    Media,
    Message,
    SessionEnded,
    Sources,
    TextDelta,
    TurnEnd,
)
from bridges import render
from bridges.budget import RateBudget
from bridges.render import CHOOSE_PROMPT, IN_PROGRESS, RenderFailed, ReplyRenderer
from bridges.split import Measure, split_text, utf16_length
from bridges.surface import SurfaceError
from tests.surfaces import RecordingSurface
from tests.test_split import FAMILY, FLAGS, TRICKY, breaks_grapheme


async def stream(events: Iterable[AgentEvent], pause_every: int = 0) -> AsyncIterator[AgentEvent]:
    for index, event in enumerate(events):
        if pause_every and index % pause_every == 0:
            await asyncio.sleep(0)
        yield event


def deltas(text: str, size: int) -> list[AgentEvent]:
    return [TextDelta(text[i : i + size]) for i in range(0, len(text), size)]


def expected_messages(text: str, surface: RecordingSurface) -> list[str]:
    return [chunk.strip() for chunk in split_text(text, surface.max_length, surface.measure) if chunk.strip()]


def assert_clean_history(surface: RecordingSurface) -> None:
    """No request overlapped another on the same message, and no edit repeated what was shown."""
    assert surface.overlaps == 0
    for posted in surface.posted.values():
        assert all(a != b for a, b in itertools.pairwise(posted.versions)), posted.versions


async def test_first_text_is_posted_before_the_agent_continues() -> None:
    surface = RecordingSurface()
    release = asyncio.Event()

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("Hel")
        await release.wait()
        yield TextDelta("lo there")
        yield TurnEnd({"k": 1})

    render = asyncio.create_task(ReplyRenderer(surface).render(agent()))
    await surface.wait_for(lambda: surface.visible_texts() == ["Hel " + IN_PROGRESS])
    release.set()
    result = await asyncio.wait_for(render, 5)
    assert surface.visible_texts() == ["Hello there"]
    assert result.text == "Hello there"
    assert result.provider_state == {"k": 1}
    assert result.message_ids == ["m1"]


async def test_chunk_storm_coalesces_into_few_edits_and_ends_exact() -> None:
    text = "".join(random.Random(7).choice("abc de\n") for _ in range(1500))
    surface = RecordingSurface(edit_interval=0.05, latency=0.005)
    events = [TextDelta(char) for char in text] * 1  # 1,500 one-character deltas
    events += [TextDelta(" tail") for _ in range(8500)]  # 10,000 deltas in all
    full = text + " tail" * 8500
    renderer = ReplyRenderer(surface, max_chars=len(full))
    result = await asyncio.wait_for(renderer.render(stream([*events, TurnEnd({})], 50)), 20)
    assert surface.visible_texts() == expected_messages(full, surface)
    assert result.text == full.strip()
    edits = surface.count("edit")
    assert edits < 200, edits  # 10,000 deltas, a few dozen requests
    assert_clean_history(surface)


async def test_ten_thousand_character_reply_splits_at_discord_limit() -> None:
    words = " ".join(f"token{n}" for n in range(1500))[:10_000]
    surface = RecordingSurface(max_length=2000, edit_interval=0.01)
    await asyncio.wait_for(ReplyRenderer(surface).render(stream([*deltas(words, 37), TurnEnd({})], 20)), 20)
    shown = surface.visible_texts()
    assert shown == expected_messages(words, surface)
    assert len(shown) == 6
    assert all(len(text) <= 2000 for text in shown)
    assert " ".join(shown) == words.strip()  # only the whitespace at the cuts was dropped
    assert_clean_history(surface)


async def test_telegram_limit_in_utf16_with_emoji() -> None:
    text = ("Emoji time 😀😃😄 " * 500)[:6000]
    surface = RecordingSurface(max_length=4096, measure=utf16_length, edit_interval=0.01)
    await asyncio.wait_for(ReplyRenderer(surface).render(stream([*deltas(text, 11), TurnEnd({})], 20)), 20)
    shown = surface.visible_texts()
    assert shown == expected_messages(text, surface)
    assert all(utf16_length(message) <= 4096 for message in shown)
    assert len(shown) == 2


@pytest.mark.parametrize("cluster", TRICKY)
async def test_unicode_at_the_split_point_is_never_broken(cluster: str) -> None:
    """Unbreakable runs of tricky clusters streamed a code point at a time across the limit."""
    text = "x" * 30 + cluster * 20
    surface = RecordingSurface(max_length=40, edit_interval=0.0)
    await asyncio.wait_for(ReplyRenderer(surface).render(stream([*deltas(text, 1), TurnEnd({})], 3)), 10)
    shown = surface.visible_texts()
    assert "".join(shown) == text.strip() or " ".join(shown).replace(" ", "") == text.replace(" ", "")
    for left, right in itertools.pairwise(shown):
        assert not breaks_grapheme(left, right)
    for posted in surface.posted.values():  # intermediate versions too
        assert all(len(version) <= 40 for version in posted.versions)


async def test_a_message_still_streaming_ends_in_the_marker_and_its_last_version_is_exact() -> None:
    """Every version of a message before its last ends in the in-progress marker where it fits; the
    last, posted when the message is full or the reply ends, is exactly the agent's text."""
    text = "".join(f"word{n} " for n in range(100))
    surface = RecordingSurface(max_length=120, edit_interval=0.0)
    await asyncio.wait_for(ReplyRenderer(surface).render(stream([*deltas(text, 7), TurnEnd({})], 1)), 20)
    assert surface.visible_texts() == expected_messages(text, surface)
    streaming = [version for posted in surface.posted.values() for version in posted.versions[:-1]]
    assert streaming
    for version in streaming:
        marked = version.endswith(" " + IN_PROGRESS)
        assert marked or len(version) + 2 > surface.max_length, version
    assert not any(posted.text.endswith(IN_PROGRESS) for posted in surface.posted.values())
    assert_clean_history(surface)


async def test_the_marker_after_a_code_fence_goes_on_a_line_of_its_own() -> None:
    """On the fence's own line the marker would turn the closing fence into code."""
    surface = RecordingSurface()
    release = asyncio.Event()

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("Run:\n```sh\nmake\n```")
        await release.wait()
        yield TextDelta("\nDone.")

    render = asyncio.create_task(ReplyRenderer(surface).render(agent()))
    await surface.wait_for(lambda: surface.visible_texts() == ["Run:\n```sh\nmake\n```\n" + IN_PROGRESS])
    release.set()
    await asyncio.wait_for(render, 5)
    assert surface.visible_texts() == ["Run:\n```sh\nmake\n```\nDone."]


async def test_shown_text_only_ever_grows() -> None:
    """Words never change once shown; at most the tail of a full message moves on to the next one."""
    text = (FAMILY + " Lorem ipsum dolor sit amet. " + FLAGS + "\n") * 60
    surface = RecordingSurface(max_length=300, edit_interval=0.0)
    await asyncio.wait_for(ReplyRenderer(surface).render(stream([*deltas(text, 5), TurnEnd({})], 2)), 20)
    compact = "".join(text.split())
    offset = 0
    for posted in surface.posted.values():
        for version in posted.versions:
            words = "".join(version.removesuffix(IN_PROGRESS).split())
            assert compact.startswith(words, offset), version
        offset += len("".join(posted.text.split()))


async def test_intermediate_edit_failure_is_recovered_by_later_text() -> None:
    surface = RecordingSurface(edit_interval=0.0)
    surface.fail_next("edit", SurfaceError("HTTP 500"), times=2)
    gate = asyncio.Event()

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("one")
        await surface.wait_for(lambda: surface.count("send") == 1)
        for word in (" two", " three", " four"):
            yield TextDelta(word)
            await asyncio.sleep(0.01)
        await gate.wait()
        yield TextDelta(" five")
        yield TurnEnd({})

    render = asyncio.create_task(ReplyRenderer(surface, retry_delay=0.01).render(agent()))
    await surface.wait_for(lambda: surface.count("edit") >= 2)
    gate.set()
    await asyncio.wait_for(render, 5)
    assert surface.visible_texts() == ["one two three four five"]


async def test_final_edit_failing_for_good_posts_the_final_text_anew() -> None:
    surface = RecordingSurface(edit_interval=0.0)
    surface.fail_next("edit", SurfaceError("message deleted", permanent=True), times=1)

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("draft")
        await surface.wait_for(lambda: surface.count("send") == 1)
        yield TextDelta(" and the rest")
        yield TurnEnd({})

    result = await asyncio.wait_for(ReplyRenderer(surface, retry_delay=0.01).render(agent()), 5)
    assert surface.visible_texts()[-1] == "draft and the rest"
    assert result.message_ids == ["m2"]


async def test_final_edit_retries_transient_failures() -> None:
    surface = RecordingSurface(edit_interval=10.0)  # no intermediate edit: the only edit is the final one
    surface.fail_next("edit", SurfaceError("HTTP 502"), times=2)

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("start")
        await surface.wait_for(lambda: surface.count("send") == 1)
        yield TextDelta(" end")
        yield TurnEnd({})

    await asyncio.wait_for(ReplyRenderer(surface, retry_delay=0.01).render(agent()), 5)
    assert surface.visible_texts() == ["start end"]
    assert surface.count("edit") == 3 and surface.count("send") == 1


async def test_platform_refusing_every_send_raises_render_failed() -> None:
    surface = RecordingSurface()
    surface.fail_next("send", SurfaceError("forbidden", permanent=True), times=5)
    with pytest.raises(RenderFailed):
        await asyncio.wait_for(ReplyRenderer(surface).render(stream([TextDelta("hi"), TurnEnd({})])), 5)


async def test_agent_failure_mid_stream_keeps_the_text_and_adds_a_notice() -> None:
    surface = RecordingSurface()

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("Let me look that up for you...   ")
        raise AgentUnavailable("provider: connection lost (secret-free detail)")

    result = await asyncio.wait_for(ReplyRenderer(surface).render(agent()), 5)
    assert isinstance(result.error, AgentUnavailable)
    assert surface.visible_texts() == [
        f"Let me look that up for you...\n\n⚠️ {AgentUnavailable.default_user_message}"
    ]
    assert "secret" not in surface.visible_texts()[0]


async def test_agent_crash_is_contained() -> None:
    surface = RecordingSurface()

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("x")
        raise KeyError("bug")

    result = await asyncio.wait_for(ReplyRenderer(surface).render(agent()), 5)
    assert result.error is not None
    assert surface.visible_texts()[0].startswith("x\n\n⚠️ ")


async def test_rich_events_render_as_messages_buttons_media_and_sources() -> None:
    surface = RecordingSurface()
    yes, no = Button("Yes", {"type": "path-yes"}), Button("No", {"type": "path-no"})
    events: list[AgentEvent] = [
        TextDelta("Streaming "),
        TextDelta("intro."),
        Message("Pick one:"),
        Buttons((yes, no)),
        Media("https://example.test/cat.png", caption="a cat"),
        Buttons((Button("Open", url="https://example.test"),)),
        Sources(("https://a.test", "https://b.test")),
        HandoffRequested("user asked"),
        SessionEnded("end_of_diagram"),
        TurnEnd({"s": 1}),
    ]
    result = await asyncio.wait_for(ReplyRenderer(surface).render(stream(events)), 5)
    assert surface.visible_texts() == [
        "Streaming intro.",
        "Pick one:",
        CHOOSE_PROMPT,
        "Sources: <https://a.test> · <https://b.test>",
    ]
    assert surface.visible_buttons()[1] == (yes, no)
    assert surface.visible_buttons()[2][0].url == "https://example.test"
    assert [media.url for media in surface.visible_media()] == ["https://example.test/cat.png"]
    assert result.handoff == HandoffRequested("user asked")
    assert result.session_ended == SessionEnded("end_of_diagram")
    assert result.provider_state == {"s": 1}


async def test_whitespace_only_text_posts_nothing() -> None:
    surface = RecordingSurface()
    result = await ReplyRenderer(surface).render(stream([TextDelta("  "), TextDelta("\n"), TurnEnd({})]))
    assert surface.visible_texts() == [] and result.text == ""


async def test_typing_is_shown_until_the_first_text() -> None:
    surface = RecordingSurface()
    release = asyncio.Event()

    async def agent() -> AsyncIterator[AgentEvent]:
        await release.wait()
        yield TextDelta("ok")
        yield TurnEnd({})

    render = asyncio.create_task(ReplyRenderer(surface).render(agent()))
    await surface.wait_for(lambda: surface.count("typing") >= 1)
    release.set()
    await asyncio.wait_for(render, 5)
    typing_before = surface.count("typing")
    assert typing_before == 1
    assert surface.requests[0].kind == "typing"


async def test_an_agent_that_answers_promptly_costs_no_typing_request() -> None:
    """A typing request for every prompt reply would be wasted: a prompt agent needs none."""
    surface = RecordingSurface()
    await ReplyRenderer(surface).render(stream([TextDelta("quick"), TurnEnd({})]))
    assert surface.count("typing") == 0 and surface.visible_texts() == ["quick"]


class Gate(RateBudget):
    """A budget with no free slot until the test opens it; says when a request starts waiting."""

    def __init__(self) -> None:
        super().__init__(1)
        self.opened = asyncio.Event()
        self.waiting = asyncio.Event()

    def available(self, reserve: int = 0) -> bool:
        return self.opened.is_set()

    def take(self) -> None:
        return None

    async def acquire(self, *, urgent: bool = False) -> None:
        self.waiting.set()
        await self.opened.wait()


async def test_text_is_composed_when_the_slot_comes_so_a_long_wait_sends_the_reply_whole() -> None:
    """In a crowded chat the first text waits for a slot: it must carry the text there is then, not
    the first word that was there when it started waiting; here the stream ends meanwhile."""
    gate = Gate()
    surface = RecordingSurface(budgets=(gate,), typing_budgets=())
    consumed = asyncio.Event()

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("Ant")
        await gate.waiting.wait()
        yield TextDelta("s are small.")
        yield TurnEnd({})
        consumed.set()

    render = asyncio.create_task(ReplyRenderer(surface).render(agent()))
    await asyncio.wait_for(consumed.wait(), 5)
    gate.opened.set()
    await asyncio.wait_for(render, 5)
    assert [(r.kind, r.text) for r in surface.requests if r.kind != "typing"] == [("send", "Ants are small.")]


async def test_a_final_edit_waiting_for_a_slot_shows_typing_from_its_own_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the first text is up, typing is how the user sees that the rest is still coming; it is
    paid from the typing budget, so it does not need the slot the final edit is waiting for."""
    monkeypatch.setattr(render, "TYPING_DELAY_SECONDS", 0.0)
    gate = Gate()
    surface = RecordingSurface(budgets=(), edit_budgets=(gate,), typing_budgets=())

    async def agent() -> AsyncIterator[AgentEvent]:
        yield TextDelta("Ant")
        await surface.wait_for(lambda: surface.count("send") == 1)
        yield TextDelta("s are small.")
        yield TurnEnd({})

    reply = asyncio.create_task(ReplyRenderer(surface).render(agent()))
    await surface.wait_for(lambda: [r.kind for r in surface.requests][-2:] == ["send", "typing"])
    gate.opened.set()
    await asyncio.wait_for(reply, 5)
    assert surface.visible_texts() == ["Ants are small."]
    assert [r.kind for r in surface.requests if r.kind != "typing"] == ["send", "edit"]


async def test_concurrent_replies_share_one_budget_and_still_end_exact() -> None:
    """Ten replies in one channel: intermediate edits thin out, first and final texts all land."""
    channel = RateBudget(10, per=1.0, burst=5)
    surfaces = [RecordingSurface(edit_interval=0.05, budgets=[channel]) for _ in range(10)]
    texts = [f"reply {n}: " + "word " * 60 for n in range(10)]

    async def one(surface: RecordingSurface, text: str) -> None:
        await ReplyRenderer(surface).render(stream([*deltas(text, 6), TurnEnd({})], 1))

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(asyncio.gather(*(one(s, t) for s, t in zip(surfaces, texts, strict=True))), 20)
    elapsed = loop.time() - started
    requests = sum(len(s.requests) for s in surfaces)
    assert requests <= 5 + 10 * elapsed + 1  # never more than the budget allowed
    assert requests <= 30  # one send and one final edit each, plus a few opportunistic edits
    for surface, text in zip(surfaces, texts, strict=True):
        assert surface.visible_texts() == [text.strip()]
        assert_clean_history(surface)


class Work:
    """Characters the renderer hands to the real splitter and to the platform's measure, counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chars = 0
        real_split = render.split_text

        def split(text: str, limit: int, measure: Measure = len) -> list[str]:
            self.chars += len(text)
            return real_split(text, limit, measure)

        monkeypatch.setattr(render, "split_text", split)

    def measure(self, text: str) -> int:
        self.chars += len(text)
        return utf16_length(text)


async def rendering_work(size: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """(characters processed, requests made) to render `size` characters streamed in 4-character deltas,
    the pump catching up every 100 characters, as it does with a provider paced over the network."""
    work = Work(monkeypatch)
    text = ("Streaming text, as an agent writes it. " * 6 + "\n\n") * (size // 236 + 1)
    text = text[:size]
    surface = RecordingSurface(max_length=4096, measure=work.measure, edit_interval=0.0)
    renderer = ReplyRenderer(surface, max_chars=size)
    result = await renderer.render(stream([*deltas(text, 4), TurnEnd({})], pause_every=25))
    assert result.text == text.strip() and surface.visible_texts() == expected_messages(text, surface)
    return work.chars, len(surface.requests)


async def test_rendering_work_grows_linearly_with_the_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step re-reads only the message still growing, never the whole reply: four times the text
    costs four times the work (re-splitting everything per edit would cost sixteen times)."""
    small, small_requests = await rendering_work(25_000, monkeypatch)
    large, large_requests = await rendering_work(100_000, monkeypatch)
    assert large_requests <= 5 * small_requests  # the same pace of edits per character
    assert large < 5 * small, (small, large)


class Runaway:
    """An agent that would stream forever; records how far it was read and whether it was closed. It
    holds on to its stream, so only the renderer can close it (not the garbage collector)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pulled = 0
        self.closed = False
        self.events = self._stream()

    async def _stream(self) -> AsyncIterator[AgentEvent]:
        try:
            while True:
                for index in range(0, len(self.text), 4):
                    delta = self.text[index : index + 4]
                    self.pulled += len(delta)
                    await asyncio.sleep(0)
                    yield TextDelta(delta)
        finally:
            self.closed = True


async def test_a_reply_past_the_cap_ends_at_a_sentence_and_the_stream_is_closed() -> None:
    sentence = "This reply goes on and on without an end in sight. "
    agent = Runaway(sentence)
    surface = RecordingSurface(max_length=2000, edit_interval=0.01)
    result = await asyncio.wait_for(ReplyRenderer(surface, max_chars=5000).render(agent.events), 10)
    assert result.cut and agent.closed
    assert agent.pulled < 5004  # not one delta more than it took to pass the cap
    shown = surface.visible_texts()
    assert len(shown) == 3 and all(text.endswith("in sight.") for text in shown)
    assert " ".join(shown) == result.text
    assert (sentence * 100).startswith(result.text) and 4900 < len(result.text) <= 5000
    assert result.provider_state is None  # the turn never ended: its state is not kept
    assert_clean_history(surface)


async def test_a_reply_cut_inside_a_word_or_a_grapheme_backs_off_to_a_whole_one() -> None:
    surface = RecordingSurface(max_length=2000)
    words = await ReplyRenderer(surface, max_chars=25).render(
        stream([TextDelta("alpha beta gamma delta epsilon")])
    )
    assert words.text == "alpha beta gamma delta" and words.cut
    accents = "e\u0301" * 40  # the cap falls between an "e" and its accent
    marks = await ReplyRenderer(RecordingSurface(), max_chars=31).render(stream([TextDelta(accents)]))
    assert marks.text == accents[:30] and marks.cut


async def test_a_whole_message_past_the_cap_is_cut_and_what_follows_is_dropped() -> None:
    surface = RecordingSurface()
    picture = Media("https://example.test/cat.png")
    events: list[AgentEvent] = [
        TextDelta("Intro. "),
        Message("First point. Second point. Third point.", media=(picture,)),
        Media(picture.url),
        TurnEnd({"s": 1}),
    ]
    result = await ReplyRenderer(surface, max_chars=34).render(stream(events))
    assert surface.visible_texts() == ["Intro.", "First point. Second point."]
    assert surface.visible_media() == [] and result.cut and result.provider_state is None


async def test_a_reply_within_the_cap_is_not_cut() -> None:
    text = "x" * 100
    result = await ReplyRenderer(RecordingSurface(), max_chars=100).render(
        stream([TextDelta(text), TurnEnd({})])
    )
    assert result.text == text and not result.cut and result.provider_state == {}


async def test_the_stream_is_closed_when_the_platform_refuses_the_reply() -> None:
    surface = RecordingSurface()
    surface.fail_next("send", SurfaceError("forbidden", permanent=True), times=5)
    agent = Runaway("more text ")
    with pytest.raises(RenderFailed):
        await asyncio.wait_for(ReplyRenderer(surface).render(agent.events), 5)
    assert agent.closed


# --- stop and regenerate ----------------------------------------------------------------------------

STOP = Button("Stop", {"control": "stop"})
AGAIN = Button("Regenerate", {"control": "regen"})


class Gated:
    """Streams "Hello there", then waits for `more` (forever, unless set) before " and more"."""

    def __init__(self) -> None:
        self.more = asyncio.Event()
        self.closed = False

    async def events(self) -> AsyncIterator[AgentEvent]:
        try:
            yield TextDelta("Hello there")
            await self.more.wait()
            yield TextDelta(" and more")
            yield TurnEnd({})
        finally:
            self.closed = True


async def test_a_stopped_reply_keeps_its_text_marked_and_its_stream_is_closed() -> None:
    surface = RecordingSurface()
    agent, stop = Gated(), asyncio.Event()
    controls = render.ReplyControls(stop=stop, stop_button=STOP, regenerate_button=AGAIN)
    task = asyncio.create_task(ReplyRenderer(surface, controls=controls).render(agent.events()))
    await surface.wait_for(lambda: surface.visible_texts() == [f"Hello there {IN_PROGRESS}"])
    assert surface.visible_buttons() == [(STOP,)]  # the Stop button rode on the first send
    stop.set()
    result = await asyncio.wait_for(task, 5)
    assert agent.closed and result.stopped and result.provider_state is None
    assert result.text == "Hello there (stopped)" == surface.visible_texts()[0]
    assert surface.visible_buttons() == [(AGAIN,)]  # Stop gone with the final edit; Regenerate offered
    assert [r.kind for r in surface.requests] == ["send", "edit"]
    assert_clean_history(surface)


async def test_a_reply_stopped_before_any_text_says_so() -> None:
    surface, stop = RecordingSurface(), asyncio.Event()

    async def thinking() -> AsyncIterator[AgentEvent]:
        stop.set()  # the user stops it while the agent has said nothing yet
        await asyncio.Event().wait()
        yield TurnEnd({})

    result = await ReplyRenderer(surface, controls=render.ReplyControls(stop=stop)).render(thinking())
    assert result.stopped and surface.visible_texts() == ["(stopped)"]


async def test_the_stop_button_costs_no_request() -> None:
    async def requests(controls: render.ReplyControls) -> list[str]:
        surface = RecordingSurface(edit_interval=0.0)
        agent = Gated()
        task = asyncio.create_task(ReplyRenderer(surface, controls=controls).render(agent.events()))
        await surface.wait_for(lambda: surface.count("send") == 1)
        agent.more.set()
        await asyncio.wait_for(task, 5)
        assert surface.visible_buttons() == [(AGAIN,) if controls.regenerate_button else ()]
        return [request.kind for request in surface.requests if request.kind != "typing"]

    plain = await requests(render.ReplyControls())
    controlled = await requests(render.ReplyControls(stop=asyncio.Event(), stop_button=STOP))
    with_regenerate = await requests(render.ReplyControls(stop_button=STOP, regenerate_button=AGAIN))
    assert plain == controlled == with_regenerate == ["send", "edit"]


async def test_regenerate_is_offered_only_on_a_reply_that_ended_well() -> None:
    controls = render.ReplyControls(regenerate_button=AGAIN)
    surface = RecordingSurface()
    await ReplyRenderer(surface, controls=controls).render(stream([TextDelta("One."), TextDelta(" Two.")]))
    assert surface.visible_buttons() == [(AGAIN,)]
    failed = RecordingSurface()
    events = stream([TextDelta("Half"), TurnEnd({})])

    async def failing() -> AsyncIterator[AgentEvent]:
        async for event in events:
            yield event
            raise AgentUnavailable("down")

    await ReplyRenderer(failed, controls=controls).render(failing())
    assert failed.visible_buttons() == [()]
