"""Typed, validated configuration: one TOML file plus `SWITCHBOARD_*` environment variables.

Each platform's section (`[discord]`, `[telegram]`, `[console]`, ...) is validated by that platform's own
config model, found through bridges/registry.py; only the platforms named in the file are imported.

Secrets never come from the file: a secret key is either set in the environment
(`SWITCHBOARD_DISCORD__TOKEN`) or named through a `*_env` indirection (`token_env = "MY_TOKEN"`).
Every problem becomes one `ConfigError` line naming the key, and never echoes a value.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from agents.base import AgentSettings
from agents.demo import DemoSettings
from agents.registry import KINDS
from bridges import catalogue, registry
from bridges.base import PlatformConfig
from bridges.hours_config import HoursSettings
from bridges.triggers import TriggerRule, check_unique
from models.db import url_secrets

ENV_PREFIX = "SWITCHBOARD_"
CONFIG_PATH_ENV = "SWITCHBOARD_CONFIG"
DEFAULT_CONFIG_PATH = "switchboard.toml"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./switchboard.db"


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the offending key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(Section):
    url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    auto_migrate: bool = Field(True, description="apply pending migrations when `run` starts")
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: SecretStr) -> SecretStr:
        from sqlalchemy.exc import ArgumentError

        from models.db import normalize_url

        try:
            normalize_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("not a database URL (expected sqlite:///PATH or postgresql://...)") from None
        return value


class Binding(Section):
    scope: str = Field(description="global, or a scope a platform offers (bridges/registry.py lists them)")
    id: str = ""
    agent: str

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str) -> str:
        return registry.known_scope(value)


class RoutingSettings(Section):
    default_agent: str = "demo"
    idle_timeout_minutes: float = Field(
        60.0, gt=0, description="after this much silence a new conversation starts"
    )
    bindings: tuple[Binding, ...] = ()


Priority = Literal["low", "normal", "high", "urgent"]
"""How urgent a reason for a human is: shown on the notification, and picks the first-response target."""
PingEntry = Annotated[str, Field(min_length=1, max_length=64)] | int


class IntakeReason(Section):
    """One button of the intake menu: what the user picks, which desks hear of it, whom they ping."""

    label: str = Field(min_length=1, max_length=80, description="the button's words (Discord shows 80)")
    desks: tuple[str, ...] = Field(
        (), description="the desks (platform names) that get the request; empty means every desk"
    )
    ping: dict[str, tuple[PingEntry, ...]] = Field(
        default_factory=dict,
        description="per desk, whom to ping instead of the desk's own ping: each platform says what it "
        'takes (Discord "role:ID" or "user:ID", Telegram "@username" or a user id)',
    )
    priority: Priority = "normal"

    @field_validator("label")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason needs a label the user can read")
        return value.strip()


class IntakeSettings(Section):
    """`[handoff.intake]`: with reasons, `/human` and an agent's handoff first ask the user why."""

    reasons: tuple[IntakeReason, ...] = Field((), description="in the order shown; none keeps /human direct")
    confirm: bool = Field(False, description='ask "Open a request to the moderators?" after the choice')

    @field_validator("reasons")
    @classmethod
    def _labels_unique(cls, value: tuple[IntakeReason, ...]) -> tuple[IntakeReason, ...]:
        labels = [reason.label.casefold() for reason in value]
        twice = sorted({reason.label for reason in value if labels.count(reason.label.casefold()) > 1})
        if twice:
            raise ValueError(f"each label may appear once; repeated: {', '.join(twice)}")
        return value

    def reason(self, label: str) -> IntakeReason | None:
        return next((reason for reason in self.reasons if reason.label == label), None)


class SlaSettings(Section):
    """`[handoff.sla]`: how soon a moderator should first answer, per priority; a case past it is
    escalated once. A request without an intake reason counts as `normal`."""

    first_response_minutes: dict[Priority, Annotated[float, Field(gt=0, le=60 * 24 * 30)]] = Field(
        default_factory=dict, description="minutes to a moderator's first reply, by priority; unset = none"
    )


class RatingSettings(Section):
    """`[handoff.ratings]`: after a moderator resolves a case they answered, the user is asked once to rate
    it (1 to 5 stars), then optionally to say more."""

    enabled: bool = Field(False, description="ask users to rate a resolved case")
    question: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="the question shown above the 1-5 star buttons (default: the catalogue's "
        "ratings.user.question, in the user's language)",
    )
    thanks: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="shown in place of the buttons once the user has rated (default: the catalogue's "
        "ratings.user.thanks)",
    )
    comments: bool = Field(True, description="after the stars, offer the user to add a comment")


class HandoffSettings(Section):
    expire_after_minutes: float = Field(
        30.0, gt=0, description="an unclaimed handoff expires after this long"
    )
    escalate_after_minutes: float | None = Field(
        10.0, gt=0, description="ping moderators again if still unclaimed after this long"
    )
    recent_entries: int = Field(10, ge=0, le=50, description="transcript lines shown to moderators")
    plain_messages: Literal["reply", "note"] = Field(
        "reply",
        description="what the claimer's plain message in a case's thread or topic is: a reply to the user, "
        "or an internal note (then /reply sends)",
    )
    anonymous_replies: bool = Field(
        False, description="replies show staff_name to the user, not the moderator"
    )
    staff_name: str = Field(
        "Staff", min_length=1, max_length=64, description="who anonymous replies are from"
    )
    require_close_reason: bool = Field(False, description="/close needs a reason")
    auto_close_minutes: float | None = Field(
        None, gt=0, description="close a claimed case after this long with no word from either side"
    )
    auto_close_warning_minutes: float = Field(
        5.0, gt=0, description="the user and the desk are warned this long before an auto-close"
    )
    closing_message: str = Field(
        "The moderator has closed this conversation. The assistant is back; ask it anything.",
        min_length=1,
        max_length=2000,
        description="what the user is told when a moderator closes their case",
    )
    hours: HoursSettings | None = Field(
        None, description="business hours: outside them requests wait, and timers count open time only"
    )
    intake: IntakeSettings = IntakeSettings()
    sla: SlaSettings = SlaSettings()
    ratings: RatingSettings = RatingSettings()


class LimitsSettings(Section):
    user_messages_per_minute: float = Field(12.0, gt=0, description="sustained rate per user")
    user_burst: int = Field(5, ge=1, description="messages a user may send at once")
    max_input_chars: int = Field(4000, ge=100, description="longer messages are shortened for the agent")
    handoffs_per_hour: int = Field(
        3, ge=1, le=100, description="requests for a human one user may open in an hour (/human or the agent)"
    )
    max_reply_chars: int = Field(
        20_000,
        gt=0,
        description="an agent reply is cut at a natural boundary before this many characters, its stream "
        "closed, and the user told it was too long",
    )
    burst_window_seconds: float = Field(
        0.0,
        ge=0,
        le=10,
        description="messages one user sends in one place within this many seconds of each other, before "
        "their turn starts, are answered as one turn; every turn waits this long for more first. 0: off",
    )


class QuotaLimits(Section):
    """One scope's limits per period; unset means no limit."""

    messages: int | None = Field(None, ge=1, description="turns sent to the agent (a joined burst is one)")
    tokens: int | None = Field(
        None,
        ge=1,
        description="prompt plus completion tokens, as the provider reports them (OpenAI-compatible "
        "agents); a reply that crosses the limit is finished, the next message is refused",
    )


class QuotaSettings(Section):
    """`[quotas]`: how much of the assistant each user, and each place (a server, a group chat), may
    use per UTC calendar day or month. Messages to a human moderator never count."""

    period: Literal["day", "month"] = Field(
        "day", description="a UTC calendar day or month: every counter starts again at 00:00 UTC"
    )
    user: QuotaLimits = Field(default_factory=QuotaLimits, description="each user, across all places")
    place: QuotaLimits = Field(
        default_factory=QuotaLimits,
        description="everyone in one place together: a Discord server (or DM), a Telegram chat",
    )

    @property
    def enabled(self) -> bool:
        limits = (self.user.messages, self.user.tokens, self.place.messages, self.place.tokens)
        return any(limit is not None for limit in limits)


class ReplyControlSettings(Section):
    """`[controls]`: what a user can do to a reply. `/stop` always works; these are the buttons."""

    stop_button: bool = Field(
        True, description="a Stop button on a reply while it streams (not on Telegram drafts: /stop there)"
    )
    regenerate_button: bool = Field(
        True,
        description="a Regenerate button on the latest reply of an agent that can be asked again "
        "(OpenAI-compatible)",
    )


class TranscriptionSettings(Section):
    """An OpenAI-compatible `/audio/transcriptions` endpoint (OpenAI, faster-whisper-server, whisper.cpp's
    server, LocalAI) that turns voice notes into the turn's text. Without this section voice notes are
    answered with a note that the bot cannot listen to them."""

    url: HttpUrl = Field(description="the API root; `/audio/transcriptions` is appended")
    api_key: SecretStr | None = Field(None, description="sent as `Authorization: Bearer`")
    model: str = Field("whisper-1", min_length=1, max_length=200)
    language: str | None = Field(None, max_length=16, description="ISO-639-1 hint, such as `en`")
    max_seconds: float = Field(300, gt=0, le=3600, description="longer voice notes are not transcribed")
    max_bytes: int = Field(20 * 1024 * 1024, gt=0, le=100 * 1024 * 1024)
    timeout_seconds: float = Field(30, gt=0, le=300)


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class OpsSettings(Section):
    instance: str = Field(
        "main",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="this process's name; give each process sharing a database its own, kept across "
        "restarts, so replies a crash cut off are reported by the process that was writing them",
    )
    listen: str = Field("", description="host:port for /healthz and /metrics; empty turns it off")
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, le=600, description="on SIGTERM, how long replies in progress may take to finish"
    )
    uvloop: bool = Field(
        True,
        description="run on uvloop's event loop where it is installed (not on Windows): less CPU for each "
        "network read of hundreds of streaming replies; false keeps asyncio's own loop",
    )

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        if value:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError("expected host:port, for example 127.0.0.1:9300")
        return value

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)


LOCALE_TAG = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"
"""A language tag as platforms give them: `en`, `de`, `pt-BR`, `es-419`."""


class StringsSettings(Section):
    """What the bot says, per locale (bridges/catalogue.py). English, German, Spanish and Russian come
    with Switchboard; each user is answered in their platform's language when there are strings for it."""

    default_locale: str = Field(
        "en",
        pattern=LOCALE_TAG,
        description="for users whose platform gives no language there are strings for",
    )
    desk_locale: str | None = Field(
        None, pattern=LOCALE_TAG, description="what the moderators' desks say; the default locale if unset"
    )
    overrides: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='per locale, catalogue key -> text: [strings.overrides.en] "notices.reset" = "..."',
    )

    @field_validator("overrides", mode="before")
    @classmethod
    def _dotted_keys(cls, value: Any) -> Any:
        """`notices.reset = "..."` unquoted is a table in TOML: read it as the key `notices.reset`."""
        if not isinstance(value, Mapping):
            return value
        return {
            locale: dict(catalogue.flatten(table)) if isinstance(table, Mapping) else table
            for locale, table in value.items()
        }

    @model_validator(mode="after")
    def _known(self) -> StringsSettings:
        for locale, table in self.overrides.items():
            if not re.match(LOCALE_TAG, locale):
                raise _KeyProblem(
                    f"strings.overrides.{locale}", "not a language tag (such as en, de or pt-BR)"
                )
            try:
                catalogue.checked(table, f"[strings.overrides.{locale}]")
            except catalogue.CatalogueError as exc:
                raise _KeyProblem(f"strings.overrides.{locale}.{exc.key}", exc.problem) from None
        have = catalogue.shipped_locales() | {catalogue.normalize(locale) for locale in self.overrides}
        for name in ("default_locale", "desk_locale"):
            tag = getattr(self, name)
            if tag is not None and catalogue.best_match(tag, have) is None:
                raise _KeyProblem(
                    f"strings.{name}", f"no strings for {tag!r} (have {', '.join(sorted(have))})"
                )
        return self


def _agent_union() -> Any:
    """One `[agents.NAME]` section: the `kind` key picks which backend's settings model validates it."""
    settings_types = tuple(kind.settings for kind in KINDS.values())
    if len(settings_types) == 1:
        return settings_types[0]
    return Annotated[Union[settings_types], Field(discriminator="kind")]  # noqa: UP007


if TYPE_CHECKING:
    AgentSettingsUnion = AgentSettings
else:
    AgentSettingsUnion = _agent_union()


def _default_agents() -> dict[str, AgentSettingsUnion]:
    return {"demo": DemoSettings()}


class Settings(Section):
    """The sections every process has; `load_settings` returns a subclass with one field per platform
    section the configuration names (see `platforms`)."""

    database: DatabaseSettings = DatabaseSettings()
    agents: dict[str, AgentSettingsUnion] = Field(default_factory=_default_agents)
    routing: RoutingSettings = RoutingSettings()
    handoff: HandoffSettings = HandoffSettings()
    limits: LimitsSettings = LimitsSettings()
    logging: LoggingSettings = LoggingSettings()
    ops: OpsSettings = OpsSettings()
    transcription: TranscriptionSettings | None = None
    triggers: tuple[TriggerRule, ...] = Field(
        (),
        description="`[[triggers]]`: when the bot answers messages not addressed to it (bridges/triggers.py)",
    )

    @field_validator("triggers")
    @classmethod
    def _one_trigger_rule_per_place(cls, rules: tuple[TriggerRule, ...]) -> tuple[TriggerRule, ...]:
        return check_unique(rules)

    @model_validator(mode="after")
    def _triggers_can_be_seen(self) -> Settings:
        """A rule that reads unaddressed messages on a platform that does not deliver their text would
        silently never fire: say so at start."""
        for index, rule in enumerate(self.triggers):
            if not rule.reads_unaddressed:
                continue
            for name, config in self.platforms().items():
                scopes = (registry.GLOBAL_SCOPE, *registry.PLATFORMS[name].binding_scopes)
                if rule.scope in scopes and config.unaddressed_text_hint is not None:
                    raise _KeyProblem(f"triggers.{index}", config.unaddressed_text_hint)
        return self

    quotas: QuotaSettings = QuotaSettings()
    controls: ReplyControlSettings = ReplyControlSettings()
    strings: StringsSettings = StringsSettings()

    @model_validator(mode="after")
    def _agents_exist(self) -> Settings:
        names = sorted(self.agents)
        if self.routing.default_agent not in self.agents:
            raise _KeyProblem(
                "routing.default_agent", f"no agent named {self.routing.default_agent!r} (have {names})"
            )
        for index, binding in enumerate(self.routing.bindings):
            if binding.agent not in self.agents:
                raise _KeyProblem(
                    f"routing.bindings.{index}.agent", f"no agent named {binding.agent!r} (have {names})"
                )
        return self

    @model_validator(mode="after")
    def _intake_fits_the_desks(self) -> Settings:
        """Every reason's desks and pings name a desk that is set up, in a form its platform takes, and
        the menu fits on every platform that shows it."""
        platforms = self.platforms()
        desks = sorted(name for name, config in platforms.items() if config.has_desk)
        reasons = self.handoff.intake.reasons
        for index, reason in enumerate(reasons):
            key = f"handoff.intake.reasons.{index}"
            for desk in (*reason.desks, *reason.ping):
                if desk not in desks:
                    raise _KeyProblem(key, f"no desk named {desk!r} is set up (have {desks})")
            for desk, entries in reason.ping.items():
                for entry in entries:
                    if problem := platforms[desk].ping_problem(entry):
                        raise _KeyProblem(f"{key}.ping.{desk}", problem)
        for name, config in platforms.items():
            limit = config.max_choice_buttons
            if limit is not None and len(reasons) > limit:
                problem = f"{len(reasons)} reasons, but {name} shows at most {limit} buttons"
                raise _KeyProblem("handoff.intake.reasons", problem)
        return self

    def platforms(self) -> dict[str, PlatformConfig]:
        """The platforms to serve, by name, in registry order: every configured one, or the fallback
        (the console) when none is."""
        configured = {
            name: config
            for name in registry.PLATFORMS
            if isinstance(config := getattr(self, name, None), PlatformConfig)
        }
        served = {name: c for name, c in configured.items() if not registry.PLATFORMS[name].fallback}
        return served or configured

    def platform(self, name: str) -> PlatformConfig | None:
        return self.platforms().get(name)

    def secrets(self) -> list[str]:
        """Every secret value, so the log filter can redact them wherever they might leak; the database
        password also on its own, since a driver may quote it without the rest of the URL."""
        values = [value for _path, value in _secret_fields(self)]
        return values + url_secrets(self.database.url.get_secret_value())


class _KeyProblem(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (optional unless named explicitly), overlay the environment, validate."""
    environ = os.environ if environ is None else environ
    explicit = path is not None or CONFIG_PATH_ENV in environ
    config_path = Path(path if path is not None else environ.get(CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH))
    raw: dict[str, Any] = {}
    if config_path.exists():
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    elif explicit:
        raise ConfigError(f"{config_path}: config file not found")

    file_keys = {path for path, _ in _leaves(raw)}
    sources = dict.fromkeys(file_keys, f"in {config_path}")
    raw = _resolve_env_indirections(raw, environ, sources)
    raw.setdefault("agents", {"demo": {"kind": "demo"}})  # so the environment can tune the default agent
    _overlay_environment(raw, environ, sources)
    _move_edit_intervals(raw, sources)

    model = _settings_model(frozenset(name for name in raw if name in registry.PLATFORMS))
    try:
        settings = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources, model)) from None

    for key, value in _secret_fields(settings):
        if key in file_keys and not _allowed_in_file(key, value):
            raise ConfigError(
                f"{key}: secrets are not read from the config file; set {_env_name(key)} "
                f'or use {key.rsplit(".", 1)[-1]}_env = "VARIABLE"'
            )
    return settings


@cache
def _settings_model(named: frozenset[str]) -> type[Settings]:
    """`Settings` with a field for each platform section given, validated by that platform's own model,
    plus the fallback platform (defaults) in case no other is given."""
    fallbacks = {name for name, platform in registry.PLATFORMS.items() if platform.fallback}
    fields: dict[str, Any] = {}
    for name in registry.PLATFORMS:
        if name in named:
            fields[name] = (registry.config_class(name) | None, None)
        elif name in fallbacks:
            config = registry.config_class(name)
            fields[name] = (config, Field(default_factory=config))
    return create_model("Settings", __base__=Settings, **fields)


def _move_edit_intervals(raw: dict[str, Any], sources: dict[str, str]) -> None:
    """Earlier releases kept edit intervals in `[streaming]` as `NAME_edit_interval`; each platform's
    section now has its own `edit_interval`. Old files keep working."""
    streaming = raw.pop("streaming", None)
    if streaming is None:
        return
    if not isinstance(streaming, dict):
        raise ConfigError("streaming: expected a section")
    for key, value in streaming.items():
        name = key.removesuffix("_edit_interval")
        if name == key or name not in registry.PLATFORMS:
            raise ConfigError(f"streaming.{key}: unknown key (set edit_interval in the platform's section)")
        section = raw.get(name)
        if section is None and not registry.PLATFORMS[name].fallback:
            continue  # a platform this file does not configure
        section = raw.setdefault(name, {})
        if "edit_interval" in section:
            raise ConfigError(f"{name}.edit_interval: given both here and as streaming.{key}")
        section["edit_interval"] = value
        if f"streaming.{key}" in sources:
            sources[f"{name}.edit_interval"] = sources[f"streaming.{key}"]


def _allowed_in_file(key: str, value: str) -> bool:
    """A database URL may sit in the file as long as it carries no password (`user:pw@` or `?password=`)."""
    return key == "database.url" and not url_secrets(value)


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{path}.")
        else:
            yield path, value


def _resolve_env_indirections(
    tree: dict[str, Any], environ: Mapping[str, str], sources: dict[str, str], prefix: str = ""
) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            resolved[key] = _resolve_env_indirections(value, environ, sources, f"{path}.")
        elif key.endswith("_env") and isinstance(value, str):
            target = key.removesuffix("_env")
            if value not in environ:
                raise ConfigError(f"{path}: environment variable {value} is not set")
            if target in tree:
                raise ConfigError(f"{prefix}{target}: given both directly and through {key}")
            resolved[target] = environ[value]
            sources[f"{prefix}{target}"] = f"from ${value}"
        else:
            resolved[key] = value
    return resolved


def _overlay_environment(raw: dict[str, Any], environ: Mapping[str, str], sources: dict[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_PATH_ENV:
            continue
        parts = [part.lower() for part in name.removeprefix(ENV_PREFIX).split("__")]
        if not all(parts):
            raise ConfigError(f"{name}: malformed variable name; use SWITCHBOARD_SECTION__KEY")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts)}: {name} addresses a value, not a section")
            node = child
        node[parts[-1]] = _parse_env_value(value)
        sources[".".join(parts)] = f"from ${name}"


def _parse_env_value(value: str) -> Any:
    """Lists and tables can be given as JSON; everything else stays a string for pydantic to coerce."""
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _describe(exc: ValidationError, sources: Mapping[str, str], model: type[Settings]) -> str:
    errors = exc.errors(include_input=False, include_url=False)
    error = min(errors, key=lambda e: e["type"] != "extra_forbidden")  # a typo explains the rest
    problem_in_check = error.get("ctx", {}).get("error")
    if isinstance(problem_in_check, _KeyProblem):
        return f"{problem_in_check.key}: {problem_in_check.problem}"
    loc = [str(part) for part in error["loc"]]
    if len(loc) > 2 and loc[0] == "agents" and loc[2] in KINDS:
        del loc[2]  # the discriminated union's tag, not a key the user wrote
    key = ".".join(loc) or "(top level)"
    where = sources.get(key)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        key += ".kind"
        where = sources.get(key)
        known = ", ".join(sorted(KINDS))
        problem = (
            f"unknown agent kind (known: {known})"
            if error["type"] == "union_tag_invalid"
            else (f"required key is missing (one of: {known})")
        )
    elif error["type"] == "extra_forbidden":
        problem = "unknown key"
    elif error["type"] == "missing" and _is_secret_path(loc, model):
        problem = f'missing secret: set {_env_name(key)} or {loc[-1]}_env = "VARIABLE"'
        where = None
    elif error["type"] == "missing":
        problem = "required key is missing"
    else:
        problem = error["msg"].removeprefix("Value error, ")
    return f"{key}: {problem}" + (f" ({where})" if where else "")


def _is_secret_path(loc: list[str], model: type[Settings]) -> bool:
    node: Any = model
    for part in loc:
        fields = getattr(node, "model_fields", None)
        if fields is None or part not in fields:
            return False
        annotation = fields[part].annotation
        node = next((arg for arg in getattr(annotation, "__args__", ()) if arg is not type(None)), annotation)
    return node is SecretStr


def _env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _secret_fields(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, SecretStr):
            yield path, value.get_secret_value()
        elif isinstance(value, BaseModel):
            yield from _secret_fields(value, f"{path}.")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from _secret_fields(item, f"{path}.{key}.")
