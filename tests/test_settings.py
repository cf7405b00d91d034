"""Configuration: one clear line naming the key for every mistake, and secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridges.discord.config import DiscordConfig
from bridges.relay_policy import RelayPolicy
from settings import ConfigError, Settings, load_settings

SECRET = "s3cr3t-token-value"


def load(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "switchboard.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(path, env or {})


def error(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml, env)
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


def test_defaults_run_the_demo_agent_on_sqlite(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.routing.default_agent == "demo"
    assert settings.agents["demo"].kind == "demo"
    assert settings.database.url.get_secret_value() == "sqlite+aiosqlite:///./switchboard.db"
    assert list(settings.platforms()) == ["console"]


def test_reply_control_buttons_can_be_turned_off(tmp_path: Path) -> None:
    policy = RelayPolicy.from_settings(load(tmp_path, "[controls]\nstop_button = false"))
    assert (policy.stop_button, policy.regenerate_button) == (False, True)


def test_missing_default_file_is_fine_but_a_named_one_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, {}).routing.default_agent == "demo"
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(None, {"SWITCHBOARD_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[database]\nurll = 'x'", "database.urll: unknown key"),
        ("[databse]\nurl = 'x'", "databse: unknown key"),
        ("[agents.demo]\nkind = 'demo'\nspeed = 3", "agents.demo.speed: unknown key"),
        (
            "[routing]\nidle_timeout_minutes = -1",
            "routing.idle_timeout_minutes: Input should be greater than 0",
        ),
        (
            "[agents.demo]\nkind = 'demo'\nfirst_chunk_delay = 'slow'",
            "agents.demo.first_chunk_delay: Input should be",
        ),
        ("[agents.demo]\nkind = 'carrier-pigeon'", "agents.demo.kind:"),
        ("[routing]\ndefault_agent = 'nope'", "routing.default_agent: no agent named 'nope'"),
        (
            "[[routing.bindings]]\nscope = 'telegram_chat'\nid = '5'\nagent = 'ghost'",
            "routing.bindings.0.agent: no agent named 'ghost'",
        ),
        ("[database]\nurl = 'mysql://u@h/db'", "database.url: unsupported database driver"),
        ("[console]\nedit_interval = 99", "console.edit_interval: Input should be less than or equal to 10"),
        ("[streaming]\nslack_edit_interval = 1", "streaming.slack_edit_interval: unknown key"),
        ("[controls]\nstop = false", "controls.stop: unknown key"),
        (
            "[controls]\nregenerate_button = 'maybe'",
            "controls.regenerate_button: Input should be a valid boolean",
        ),
        ("x = [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    assert expected in error(tmp_path, toml)


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, f"[discord]\ntoken = '{SECRET}'")
    assert message.startswith("discord.token: secrets are not read from the config file")
    assert "SWITCHBOARD_DISCORD__TOKEN" in message and "token_env" in message


def test_database_password_in_file_is_refused(tmp_path: Path) -> None:
    assert error(tmp_path, f"[database]\nurl = 'postgresql://bot:{SECRET}@db/switchboard'").startswith(
        "database.url: secrets are not read from the config file"
    )
    plain = load(tmp_path, "[database]\nurl = 'postgresql://bot@db/switchboard'")
    assert plain.database.url.get_secret_value() == "postgresql://bot@db/switchboard"


def test_database_password_in_the_query_string_is_a_secret_too(tmp_path: Path) -> None:
    url = f"postgresql://bot@db/switchboard?sslmode=require&password={SECRET}"
    assert error(tmp_path, f"[database]\nurl = '{url}'") == (
        "database.url: secrets are not read from the config file; "
        'set SWITCHBOARD_DATABASE__URL or use url_env = "VARIABLE"'
    )
    from_env = load(tmp_path, "", {"SWITCHBOARD_DATABASE__URL": url})
    assert SECRET in from_env.secrets()  # on its own, for the log redaction


def test_missing_secret_is_one_line(tmp_path: Path) -> None:
    assert error(tmp_path, "[telegram]\nbase_url = 'http://127.0.0.1:1/bot'") == (
        'telegram.token: missing secret: set SWITCHBOARD_TELEGRAM__TOKEN or token_env = "VARIABLE"'
    )
    assert error(tmp_path, "[discord]\ntoken_env = 'MY_DISCORD_TOKEN'") == (
        "discord.token_env: environment variable MY_DISCORD_TOKEN is not set"
    )


def test_secrets_from_environment_and_indirection(tmp_path: Path) -> None:
    settings = load(tmp_path, "[discord]\ntoken_env = 'MY_DISCORD_TOKEN'", {"MY_DISCORD_TOKEN": SECRET})
    discord = settings.platform("discord")
    assert isinstance(discord, DiscordConfig)
    assert discord.token.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert SECRET in settings.secrets()

    from_env = load(tmp_path, "", {"SWITCHBOARD_TELEGRAM__TOKEN": SECRET})
    assert from_env.telegram is not None and from_env.telegram.token.get_secret_value() == SECRET


def test_environment_overrides_file_and_typos_in_it_are_caught(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "[routing]\nidle_timeout_minutes = 5",
        {"SWITCHBOARD_ROUTING__IDLE_TIMEOUT_MINUTES": "90", "SWITCHBOARD_AGENTS__DEMO__CHUNK_DELAY": "0"},
    )
    assert settings.routing.idle_timeout_minutes == 90
    assert settings.agents["demo"].chunk_delay == 0  # type: ignore[union-attr]
    message = error(tmp_path, "", {"SWITCHBOARD_ROUTING__IDLE_TIMEOUT": "5"})
    assert message == "routing.idle_timeout: unknown key (from $SWITCHBOARD_ROUTING__IDLE_TIMEOUT)"
    # A typo is reported even when it also leaves a required secret missing.
    assert error(tmp_path, "", {"SWITCHBOARD_DISCORD__TOKN": SECRET}).startswith("discord.tokn: unknown key")


def test_value_and_indirection_together_is_ambiguous(tmp_path: Path) -> None:
    message = error(
        tmp_path, "[database]\nurl = 'sqlite:///a.db'\nurl_env = 'DB_URL'", {"DB_URL": "sqlite:///b.db"}
    )
    assert message == "database.url: given both directly and through url_env"


def test_earlier_telegram_group_pacing_keys_still_load(tmp_path: Path) -> None:
    """`group_messages_per_minute` and `group_burst` (earlier releases) become the hard window."""
    path = tmp_path / "switchboard.toml"
    path.write_text('[telegram]\ntoken_env = "TG"\ngroup_messages_per_minute = 15\ngroup_burst = 5\n')
    settings = load_settings(path, environ={"TG": SECRET})
    telegram = settings.platform("telegram")
    assert telegram is not None
    assert (telegram.group_messages, telegram.group_window_seconds) == (15, 60.0)  # type: ignore[attr-defined]
