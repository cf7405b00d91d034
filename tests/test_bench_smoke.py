"""The benchmark harness (`python -m bench.run`) at a tiny scale: a check that it measures correctly,
not a timing check. Its figures are not asserted, only that every reply arrived whole and unthrottled."""

from __future__ import annotations

import json

import pytest

from bench.observe import discord_floor, telegram_floor
from bench.run import benchmark, parse_args
from fakes.discord import FakeDiscord
from fakes.telegram import FakeTelegram


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_small_run_prints_a_table_with_every_reply_exact_and_no_429s() -> None:
    options = parse_args(
        ["--levels", "2", "--tokens", "5", "--rate", "100", "--first-chunk", "0.05", "--sessions", "200"]
    )
    report = await benchmark(options)

    table = report.table()
    rows = [line.split() for line in table.splitlines() if line.startswith("2 ")]
    assert [(row[1], row[2]) for row in rows[:4]] == [
        ("spread", "discord"),
        ("spread", "telegram"),
        ("piled", "discord"),
        ("piled", "telegram"),
    ]
    assert all(row[-2:] == ["0", "100%"] for row in rows[:4]), table
    assert "PASS  0 429 responses at every level: 0 in total" in table
    assert "PASS  100% exact final text: 4/4" in table
    assert "RSS per idle session:" in table

    figures = json.loads(json.dumps(report.to_json()))
    platforms = [p for scenario in figures["scenarios"] for p in scenario["platforms"]]
    assert [p["exact_final_text"] for p in platforms] == [1, 1, 1, 1]
    assert all(p["first_visible_p99_ms"] is not None and p["requests_per_reply"] >= 2 for p in platforms)
    assert all(scenario["chunks"] == 10 for scenario in figures["scenarios"])  # 2 replies of 5 chunks
    assert figures["idle"]["sessions"] == 200


def test_the_floor_is_what_the_platform_limits_force_on_first_texts() -> None:
    # Telegram: 30 messages per second overall with a burst of 30; one private chat per reply.
    telegram = telegram_floor(FakeTelegram())
    delays = telegram.delays([(0.0, ["overall", f"chat:{n}"]) for n in range(32)])
    assert delays[:30] == [0.0] * 30
    assert [round(d, 3) for d in delays[30:]] == [0.033, 0.067]

    # Discord: 5 messages per 5 s in a channel, counted in windows that open with their first request.
    discord = discord_floor(FakeDiscord())
    delays = discord.delays([(at, ["global", "channel:1"]) for at in (0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0)])
    assert delays == [0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 3.0]
