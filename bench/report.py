"""The benchmark's figures: per scenario and platform, the targets they are judged against, and the
printed table (or JSON)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bench.observe import Platform

Layout = Literal["spread", "piled"]
FIRST_VISIBLE_BUDGET = 0.050
"""Seconds the first text may take beyond the provider's first chunk (target, at the top level)."""
CPU_PER_CHUNK_BUDGET = 0.002
WHERE: dict[tuple[Layout, Platform], str] = {
    ("spread", "discord"): "DMs",
    ("spread", "telegram"): "private, drafts",
    ("piled", "discord"): "guild channels, @",
    ("piled", "telegram"): "groups, @",
}

HEADING = """\
Switchboard benchmark: {tokens}-token replies, {rate:g} tokens/s, first chunk at {first_ms:g} ms; {database}.
Each level sends that many messages at once, half to Discord, half to Telegram (level 1: one each, in turn).
  spread: every reply in its own chat: Discord DMs; Telegram private chats, streamed as drafts.
  piled:  {per_chat} replies per chat: Discord guild channels, Telegram groups; @mentions; send, then edit.
Times in ms. to agent: from the user's message to the bot's request reaching the provider.
first: first text on screen (a draft counts) after the provider's first chunk. floor: the least
delay the platform limits force on that. final: the exact final text in a real message after the last chunk.
never: not within the run. req/reply: platform requests per reply. exact: replies ending in exactly the text.
"""
SCENARIO_NOTE = """\
wall: first message to the last reply delivered. bot CPU: user + system time of the bot process until it is
idle again, and that over the provider's chunks. harness lag: how late the fakes' own event loop ran (p99).
"""


def percentile(values: Sequence[float | None], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) counting None as never (infinity); None for no values."""
    if not values:
        return None
    ordered = sorted(math.inf if value is None else value for value in values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class ReplyTiming:
    """One reply, in seconds from the provider's chunks (None: it never got that far)."""

    first_visible: float | None
    """First text on screen, after the provider wrote the first chunk."""
    final_lag: float | None
    """Exact final text in a real message, after the provider wrote the last chunk."""
    final_shown_lag: float | None
    """Exact final text on screen, a draft included, after the last chunk."""
    floor: float | None
    """The least delay the platform's limits force on the first text (see `bench.observe.Floor`)."""
    to_agent: float | None = None
    """From the user's message being sent to the platform, to the bot's request reaching the provider."""

    @property
    def exact(self) -> bool:
        return self.final_lag is not None


@dataclass
class PlatformResult:
    platform: Platform
    layout: Layout
    chats: int
    replies: list[ReplyTiming] = field(default_factory=list)
    requests: int = 0
    limited: int = 0
    """429 answers."""

    def first_visible(self, q: float) -> float | None:
        return percentile([r.first_visible for r in self.replies], q)

    def final_lag(self, q: float) -> float | None:
        return percentile([r.final_lag for r in self.replies], q)

    def floor(self, q: float) -> float | None:
        return percentile([r.floor for r in self.replies if r.floor is not None], q)

    def to_agent(self, q: float) -> float | None:
        return percentile([r.to_agent for r in self.replies], q)

    @property
    def exact(self) -> int:
        return sum(reply.exact for reply in self.replies)

    def summary(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "where": WHERE[(self.layout, self.platform)],
            "replies": len(self.replies),
            "chats": self.chats,
            "first_visible_p50_ms": _ms(self.first_visible(50)),
            "first_visible_p99_ms": _ms(self.first_visible(99)),
            "first_visible_floor_p99_ms": _ms(self.floor(99)),
            "message_to_agent_p50_ms": _ms(self.to_agent(50)),
            "message_to_agent_p99_ms": _ms(self.to_agent(99)),
            "final_lag_p50_ms": _ms(self.final_lag(50)),
            "final_lag_p99_ms": _ms(self.final_lag(99)),
            "final_shown_lag_p99_ms": _ms(percentile([r.final_shown_lag for r in self.replies], 99)),
            "requests": self.requests,
            "requests_per_reply": round(self.requests / len(self.replies), 2) if self.replies else None,
            "rate_limited_429": self.limited,
            "exact_final_text": self.exact,
        }


@dataclass
class ScenarioResult:
    level: int
    layout: Layout
    platforms: list[PlatformResult]
    wall_seconds: float = 0.0
    chunks: int = 0
    cpu_seconds: float = 0.0
    """The bot's CPU time from the first message until it was idle again after the last reply."""
    harness_lag_p99: float | None = None
    """How late this harness's own event loop ran (the fakes and the provider share it)."""

    @property
    def cpu_per_chunk(self) -> float | None:
        return self.cpu_seconds / self.chunks if self.chunks else None

    def summary(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "layout": self.layout,
            "platforms": [platform.summary() for platform in self.platforms],
            "wall_seconds": round(self.wall_seconds, 2),
            "chunks": self.chunks,
            "bot_cpu_seconds": round(self.cpu_seconds, 3),
            "bot_cpu_ms_per_chunk": _ms(self.cpu_per_chunk, 3),
            "harness_loop_lag_p99_ms": _ms(self.harness_lag_p99),
        }


@dataclass(frozen=True)
class IdleMemory:
    sessions: int
    empty_rss: int
    seeded_rss: int

    @property
    def per_session(self) -> float:
        return (self.seeded_rss - self.empty_rss) / self.sessions


@dataclass(frozen=True)
class Target:
    name: str
    met: bool
    detail: str


@dataclass
class Report:
    settings: dict[str, Any]
    scenarios: list[ScenarioResult]
    peak_rss: int
    idle: IdleMemory | None

    def targets(self) -> list[Target]:
        platforms = [p for s in self.scenarios for p in s.platforms]
        limited = sum(p.limited for p in platforms)
        exact, replies = sum(p.exact for p in platforms), sum(len(p.replies) for p in platforms)
        top = max(s.level for s in self.scenarios)
        at_top = [r for s in self.scenarios if s.level == top for p in s.platforms for r in p.replies]
        first_p99 = percentile([r.first_visible for r in at_top], 99)
        forced = percentile([r.floor for r in at_top if r.floor is not None], 99)
        excess = percentile(
            [
                r.first_visible - r.floor
                for r in at_top
                if r.first_visible is not None and r.floor is not None
            ],
            99,
        )
        cpu = [(s.cpu_per_chunk, s) for s in self.scenarios if s.cpu_per_chunk is not None]
        worst_cpu, worst = max(cpu, key=lambda pair: pair[0]) if cpu else (None, None)
        return [
            Target("0 429 responses at every level", limited == 0, f"{limited} in total"),
            Target("100% exact final text", exact == replies, f"{exact}/{replies}"),
            Target(
                f"first-visible p99 <= first chunk + {FIRST_VISIBLE_BUDGET * 1000:g} ms at {top} "
                "concurrent replies",
                first_p99 is not None and first_p99 <= FIRST_VISIBLE_BUDGET,
                f"p99 {_with_unit(first_p99)}; the platform limits force at least {_with_unit(forced)} "
                f"(p99), and p99 beyond that floor is {_with_unit(excess)}",
            ),
            Target(
                f"bridge CPU <= {CPU_PER_CHUNK_BUDGET * 1000:g} ms per chunk",
                worst_cpu is not None and worst_cpu <= CPU_PER_CHUNK_BUDGET,
                f"worst {_with_unit(worst_cpu, 3)}"
                + (f" (level {worst.level} {worst.layout})" if worst is not None else ""),
            ),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "scenarios": [scenario.summary() for scenario in self.scenarios],
            "peak_rss_bytes": self.peak_rss,
            "idle": (
                {**asdict(self.idle), "rss_bytes_per_session": round(self.idle.per_session, 1)}
                if self.idle
                else None
            ),
            "targets": [asdict(target) for target in self.targets()],
        }

    def table(self) -> str:
        s = self.settings
        lines = [*HEADING.format(first_ms=s["first_chunk"] * 1000, **s).splitlines(), ""]
        lines += self._platform_grid()
        lines.append("")
        lines += self._scenario_grid()
        lines.append("")
        lines.append(f"Peak RSS of the bot (VmHWM): {self.peak_rss / 2**20:.1f} MiB")
        if self.idle is not None:
            lines.append(
                f"RSS per idle session: {self.idle.per_session:.0f} bytes ({self.idle.sessions:,} sessions "
                f"in the database: {self.idle.seeded_rss / 2**20:.1f} MiB idle, vs "
                f"{self.idle.empty_rss / 2**20:.1f} MiB with none)"
            )
        lines.append("")
        lines.append("Targets:")
        for target in self.targets():
            lines.append(f"  {'PASS' if target.met else 'MISS'}  {target.name}: {target.detail}")
        return "\n".join(lines)

    def _platform_grid(self) -> list[str]:
        header = (
            "level", "layout", "platform", "where", "replies", "chats", "to agent p50", "to agent p99",
            "first p50", "first p99", "floor p99", "final p50", "final p99", "req/reply", "429", "exact",
        )  # fmt: skip
        rows: list[tuple[str, ...]] = []
        for scenario in self.scenarios:
            for p in scenario.platforms:
                rows.append(
                    (
                        str(scenario.level),
                        scenario.layout,
                        p.platform,
                        WHERE[(p.layout, p.platform)],
                        str(len(p.replies)),
                        str(p.chats),
                        _fmt_ms(p.to_agent(50)),
                        _fmt_ms(p.to_agent(99)),
                        _fmt_ms(p.first_visible(50)),
                        _fmt_ms(p.first_visible(99)),
                        _fmt_ms(p.floor(99)),
                        _fmt_ms(p.final_lag(50)),
                        _fmt_ms(p.final_lag(99)),
                        f"{p.requests / len(p.replies):.1f}" if p.replies else "-",
                        str(p.limited),
                        f"{100 * p.exact / len(p.replies):.0f}%" if p.replies else "-",
                    )
                )
        return _grid(header, rows, text_columns=4)

    def _scenario_grid(self) -> list[str]:
        header = ("level", "layout", "wall s", "chunks", "bot CPU s", "CPU ms/chunk", "harness lag p99 ms")
        rows = [
            (
                str(s.level),
                s.layout,
                f"{s.wall_seconds:.1f}",
                str(s.chunks),
                f"{s.cpu_seconds:.2f}",
                _fmt_ms(s.cpu_per_chunk, 3),
                _fmt_ms(s.harness_lag_p99),
            )
            for s in self.scenarios
        ]
        return [*_grid(header, rows, text_columns=2), *SCENARIO_NOTE.splitlines()]


def _with_unit(seconds: float | None, digits: int = 0) -> str:
    text = _fmt_ms(seconds, digits)
    return text if text in ("-", "never") else f"{text} ms"


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int) -> list[str]:
    """Columns padded to their widest cell: text to the left, figures to the right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if index < text_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *(line(row) for row in rows)]


def _ms(seconds: float | None, digits: int = 1) -> float | None:
    """Milliseconds for JSON: null for "never" as for "no replies" (the reply counts tell them apart)."""
    return None if seconds is None or math.isinf(seconds) else round(seconds * 1000, digits)


def _fmt_ms(seconds: float | None, digits: int = 0) -> str:
    if seconds is None:
        return "-"
    return "never" if math.isinf(seconds) else f"{seconds * 1000:,.{digits}f}"
