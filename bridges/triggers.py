"""When the bot answers a message nobody addressed to it: per-place trigger rules, platform-neutral.

A message that mentions the bot, replies to it, is a command, or is sent in a private chat is always
answered (unless it comes from a bot and the rule ignores bots). Beyond that, the rule of the message's
place decides: `[[triggers]]` entries keyed like agent bindings (`scope` + `id`, from
bridges/registry.py); the most specific place wins *as a whole* (a channel's rule replaces its server's,
it is not merged), then the `global` rule, then the default: answer only when addressed.

A rule answers every message (`mode = "all"`), every new forum post (`"new_posts"`; follow-ups inside a
post only by the other triggers), or messages that start with a prefix, contain a keyword as a whole
word, match one regular expression, or are picked at random at `random_reply_rate`. Its ignore rules
(users, roles, prefixes such as "!" or "//") silence only those passive triggers: someone who addresses
the bot directly is still answered, since they plainly want it. To silence a person entirely there is
`/block`, or the platform's deny and allow lists.

The regular expression runs on RE2 (google-re2): matching takes time linear in the message, whatever the
pattern, so no pattern can backtrack catastrophically; constructs RE2 cannot do in linear time
(lookarounds, backreferences) are refused when the configuration is loaded.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridges import registry

PATTERN_MAX_CHARS = 300
"""Longest `pattern` accepted: a regular expression in a chat bot's config has no need for more."""
PATTERN_MAX_MEMORY = 1 << 20
"""Bytes RE2 may use for one compiled pattern; a pattern needing more is refused at load."""
WORD_MAX_CHARS = 100

Mode = Literal["mention", "all", "new_posts"]
Reason = Literal["addressed", "all", "new_post", "prefix", "keyword", "pattern", "random"]


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = PATTERN_MAX_MEMORY
    options.log_errors = False  # the operator gets the one-line ConfigError instead
    return options


def _as_text(value: Any) -> Any:
    """TOML ids are often written as numbers; they are kept as the strings platforms use."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list | tuple):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


class TriggerRule(BaseModel):
    """One `[[triggers]]` entry: when the bot answers in one place (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str = Field(description="global, or a scope a platform offers (as for [[routing.bindings]])")
    id: str = Field("", description="the channel, server or chat id; empty for global")
    mode: Mode = Field(
        "mention",
        description="mention: only the triggers below; all: every message; new_posts: every new forum post",
    )
    keywords: tuple[str, ...] = Field((), max_length=200, description="whole words, any case")
    prefixes: tuple[str, ...] = Field(
        (), max_length=50, description="a message starting with one (any case) is answered, without it"
    )
    pattern: str | None = Field(
        None, min_length=1, max_length=PATTERN_MAX_CHARS, description="one RE2 regular expression"
    )
    random_reply_rate: float = Field(0.0, ge=0, le=1, description="chance of answering any other message")
    ignore_users: tuple[str, ...] = Field(
        (), description="user ids whose messages start nothing by themselves"
    )
    ignore_roles: tuple[str, ...] = Field((), description="role ids likewise (platforms with roles)")
    ignore_prefixes: tuple[str, ...] = Field((), description='messages starting with these, e.g. "!" or "//"')
    ignore_bots: bool = Field(True, description="never answer other bots, even when they mention this one")

    @field_validator("id", "ignore_users", "ignore_roles", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return _as_text(value)

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str) -> str:
        return registry.known_scope(value)

    @field_validator("keywords", "prefixes", "ignore_prefixes")
    @classmethod
    def _words(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not value.strip() or len(value) > WORD_MAX_CHARS:
                raise ValueError(f"each entry must be 1-{WORD_MAX_CHARS} characters and not only spaces")
        return tuple(value.strip() for value in values)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re2.compile(value, _re2_options())
            except re2.error as exc:
                detail = exc.args[0].decode(errors="replace") if exc.args else "invalid"
                raise ValueError(
                    f"not a regular expression RE2 accepts ({detail}); RE2 has no lookarounds or "
                    "backreferences, which is what keeps matching fast on any message"
                ) from None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.scope == registry.GLOBAL_SCOPE and self.id:
            raise ValueError("a global rule takes no id")
        if self.scope != registry.GLOBAL_SCOPE and not self.id:
            raise ValueError(f"scope {self.scope} needs the id of the place")
        extras = self.keywords or self.prefixes or self.pattern or self.random_reply_rate
        if self.mode == "all" and extras:
            raise ValueError(
                'mode = "all" answers every message already: keywords, prefixes, pattern and '
                "random_reply_rate would never matter here; remove them or use another mode"
            )
        return self

    @property
    def place(self) -> tuple[str, str]:
        return self.scope, self.id

    @property
    def reads_unaddressed(self) -> bool:
        """Whether it needs messages that do not address the bot (their text, on most platforms)."""
        return self.mode != "mention" or bool(
            self.keywords or self.prefixes or self.pattern or self.random_reply_rate
        )


def check_unique(rules: tuple[TriggerRule, ...]) -> tuple[TriggerRule, ...]:
    """For the `triggers` setting: one rule per place, or which one applies would be a guess."""
    seen: set[tuple[str, str]] = set()
    for rule in rules:
        if rule.place in seen:
            where = rule.scope if not rule.id else f"{rule.scope} {rule.id}"
            raise ValueError(f"two rules for {where}: merge them into one")
        seen.add(rule.place)
    return rules


@dataclass(frozen=True)
class MessageFacts:
    """What a bridge knows about one message, in the policy's terms."""

    text: str
    """As meant for the agent: the bot's own mention already taken out."""
    scopes: tuple[tuple[str, str], ...]
    """The message's places, most specific first (as `Inbound.binding_scopes`); global is implied."""
    user_id: str
    roles: frozenset[str] = frozenset()
    private: bool = False
    """A direct message or private chat: everything there is for the bot."""
    mentioned: bool = False
    reply_to_bot: bool = False
    """A reply to the bot's message, or a message in a thread the bot opened."""
    is_command: bool = False
    """A text command (a platform that routes commands to handlers of their own never asks about them)."""
    from_bot: bool = False
    new_post: bool = False
    """The first message of a new forum post."""


@dataclass(frozen=True)
class Answer:
    """Why the bot answers, and the text the agent gets (a trigger prefix is taken off)."""

    reason: Reason
    text: str


class _Rule:
    """A `TriggerRule` with its matchers compiled once."""

    def __init__(self, rule: TriggerRule) -> None:
        self.rule = rule
        # escaped literals in one alternation: no nested quantifier, so the stdlib engine cannot blow up
        words = "|".join(re.escape(word) for word in sorted(rule.keywords, key=len, reverse=True))
        self.keywords = re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE) if words else None
        self.pattern = re2.compile(rule.pattern, _re2_options()) if rule.pattern else None

    def ignores(self, facts: MessageFacts) -> bool:
        rule = self.rule
        return (
            facts.user_id in rule.ignore_users
            or bool(facts.roles & set(rule.ignore_roles))
            or _starts_with(facts.text, rule.ignore_prefixes) is not None
        )

    def passive(self, facts: MessageFacts) -> Answer | None:
        """The triggers that need no address, other than chance."""
        mode, text = self.rule.mode, facts.text
        if mode == "all":
            return Answer("all", text)
        if mode == "new_posts" and facts.new_post:
            return Answer("new_post", text)
        rest = _starts_with(text, self.rule.prefixes)
        if rest is not None:
            return Answer("prefix", rest or text)
        if self.keywords is not None and self.keywords.search(text):
            return Answer("keyword", text)
        if self.pattern is not None and self.pattern.search(text):
            return Answer("pattern", text)
        return None


_DEFAULT = _Rule(TriggerRule(scope=registry.GLOBAL_SCOPE))


class TriggerPolicy:
    """Decides, from a bridge's `MessageFacts`, whether the bot answers a message and why.

    `chance` returns a float in [0, 1); tests pass a seeded one so random replies are deterministic."""

    def __init__(
        self, rules: Iterable[TriggerRule] = (), *, chance: Callable[[], float] = random.random
    ) -> None:
        self._rules: Mapping[tuple[str, str], _Rule] = {rule.place: _Rule(rule) for rule in rules}
        self._chance = chance

    def reads_unaddressed(self, scopes: Iterable[str]) -> bool:
        """Whether any rule that applies in these scopes (or everywhere) needs unaddressed messages."""
        wanted = {registry.GLOBAL_SCOPE, *scopes}
        return any(r.rule.scope in wanted and r.rule.reads_unaddressed for r in self._rules.values())

    def answer(self, facts: MessageFacts, *, roll: bool = True) -> Answer | None:
        """Why the bot answers, or None to stay silent. `roll=False` leaves chance out (an edit does not
        get a second draw at a random reply)."""
        rule = self._find(facts.scopes)
        if facts.from_bot and rule.rule.ignore_bots:
            return None
        if facts.private or facts.mentioned or facts.reply_to_bot or facts.is_command:
            return Answer("addressed", facts.text)
        if rule.ignores(facts):
            return None
        found = rule.passive(facts)
        if (
            found is None
            and roll
            and rule.rule.random_reply_rate
            and self._chance() < rule.rule.random_reply_rate
        ):
            found = Answer("random", facts.text)
        return found

    def _find(self, scopes: tuple[tuple[str, str], ...]) -> _Rule:
        for place in (*scopes, (registry.GLOBAL_SCOPE, "")):
            if (found := self._rules.get(place)) is not None:
                return found
        return _DEFAULT


def _starts_with(text: str, prefixes: tuple[str, ...]) -> str | None:
    """The rest of `text` after the first of `prefixes` it starts with (any case, after leading spaces),
    stripped; None if it starts with none."""
    text = text.lstrip()
    for prefix in prefixes:
        if text[: len(prefix)].casefold() == prefix.casefold():
            return text[len(prefix) :].strip()
    return None
