"""Prometheus metrics: what an operator watches. Recorded where things happen; served by ops.health."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

REPLIES = Counter(
    "switchboard_replies_total",
    "Agent replies by platform, agent and outcome (ok, stopped, agent_error, undelivered).",
    ["platform", "agent", "outcome"],
)
FIRST_TEXT_SECONDS = Histogram(
    "switchboard_first_text_seconds",
    "From the user's message to the first visible text of the reply.",
    ["platform"],
    buckets=LATENCY_BUCKETS,
)
REPLY_SECONDS = Histogram(
    "switchboard_reply_seconds",
    "From the user's message to the exact final text.",
    ["platform"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "switchboard_provider_errors_total", "Agent failures by agent and error class.", ["agent", "error"]
)
PLATFORM_RATE_LIMITED = Counter(
    "switchboard_platform_429_total", "429 responses the platforms sent us.", ["platform"]
)
HANDOFF_TRANSITIONS = Counter(
    "switchboard_handoff_transitions_total", "Handoff state changes, by the state entered.", ["status"]
)
OPEN_HANDOFFS = Gauge("switchboard_open_handoffs", "Handoffs waiting for or held by a moderator.", ["status"])
CASE_BUCKETS = (30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)
CASE_FIRST_RESPONSE_SECONDS = Histogram(
    "switchboard_case_first_response_seconds",
    "From a request for a human to the first moderator reply the user got.",
    buckets=CASE_BUCKETS,
)
CASE_TIME_TO_CLOSE_SECONDS = Histogram(
    "switchboard_case_time_to_close_seconds",
    "From a request for a human to its close, by outcome (resolved, returned, expired).",
    ["outcome"],
    buckets=CASE_BUCKETS,
)
RATINGS = Counter(
    "switchboard_ratings_total",
    "Satisfaction ratings by score (1-5), the desk that resolved the case, and the user's platform.",
    ["score", "desk", "platform"],
)
AGENT_TOKENS = Counter(
    "switchboard_agent_tokens_total",
    "Tokens the providers reported (OpenAI-compatible `include_usage`), by agent and kind "
    "(prompt, completion).",
    ["agent", "kind"],
)
