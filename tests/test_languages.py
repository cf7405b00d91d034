"""Languages: the message catalogue (complete German, Spanish and Russian, checked placeholders, English
fallback, operator overrides) and each user answered in their platform's language, end to end."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges import catalogue
from bridges.catalogue import Catalogue, CatalogueError, Strings
from bridges.discord.bridge import DiscordBridge
from bridges.discord.cog import Replies as DiscordReplies
from bridges.notices import Notices
from bridges.relay import Relay
from bridges.telegram.handlers import Replies as TelegramReplies
from fakes.discord import FakeDiscord
from fakes.telegram.harness import POLICY, running
from settings import ConfigError, load_settings
from tests.discord_support import discord_config
from tests.test_discord import ScriptedAgent
from tests.test_telegram_desk import QUICK, desk_running

TRANSLATED = ("de", "es", "ru")
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""Which language is spoken does not depend on the database."""


# -- the catalogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_key_is_translated_with_the_same_placeholders(locale: str) -> None:
    source, table = catalogue.source(), catalogue.shipped()[locale]
    missing = sorted(set(source) - set(table))
    assert missing == [], f"bridges/locales/{locale}.toml lacks {missing}"
    for key, text in table.items():
        assert catalogue.placeholders(text) == catalogue.placeholders(source[key]), key
        assert text.strip(), key


def _classes_of_strings() -> Iterator[type]:
    """Every class in bridges/ and agents/ named like a class of strings (…Notices, …Replies, …Words)."""
    for name in catalogue.string_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and re.search(r"(Notices|Replies|Words)$", cls.__name__):
                yield cls


def test_every_class_of_strings_is_registered_in_the_catalogue() -> None:
    found = list(_classes_of_strings())
    assert len(found) >= 13
    unregistered = [f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, Strings)]
    assert unregistered == [], "derive these from bridges.catalogue.Strings with a key"
    assert set(found) <= set(catalogue.registered().values())


def test_two_classes_cannot_share_a_key() -> None:
    with pytest.raises(TypeError, match="'notices' is taken by Notices"):

        class Again(Strings, key="notices"):
            reset = "again"


@pytest.fixture
def locales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of translation files in place of bridges/locales/."""
    monkeypatch.setattr(catalogue, "LOCALES_DIR", tmp_path)
    catalogue.shipped.cache_clear()
    yield tmp_path
    catalogue.shipped.cache_clear()


def test_a_missing_translation_falls_back_to_english_never_to_the_key(locales: Path) -> None:
    (locales / "de.toml").write_text('[notices]\nreset = "Neues Gespräch."\n', encoding="utf-8")
    words = Catalogue().words("de-AT")  # a regional tag speaks its language
    assert words.locale == "de"
    assert words(Notices).reset == "Neues Gespräch."
    assert words(Notices).session_ended == Notices.session_ended
    assert Catalogue().words("pt-BR")(Notices).reset == Notices.reset  # no Portuguese: the default
    assert Catalogue().words(None)(Notices).reset == Notices.reset


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('slow_down = "Warte {sekunden} Sekunden."', "placeholders must be {seconds}, not {sekunden}"),
        ('slow_down = "Warte kurz."', "placeholders must be {seconds}, not none"),
        ('rest = "gibt es nicht"', "unknown key (no class of strings has it)"),
        ('reset = "{"', "not a valid template"),
    ],
)
def test_a_bad_translation_is_refused_at_load_with_one_line_naming_key_and_file(
    locales: Path, line: str, problem: str
) -> None:
    (locales / "de.toml").write_text(f"[notices]\n{line}\n", encoding="utf-8")
    with pytest.raises(CatalogueError) as refused:
        Catalogue()
    message = str(refused.value)
    assert message.startswith(f"bridges/locales/de.toml: notices.{line.split()[0]}: {problem}")
    assert "\n" not in message


def _settings(tmp_path: Path, body: str) -> Catalogue:
    path = tmp_path / "switchboard.toml"
    path.write_text(body, encoding="utf-8")
    strings = load_settings(path, environ={}).strings
    return Catalogue(strings.default_locale, strings.overrides)


def test_an_override_in_config_wins_and_an_english_one_is_the_fallback(tmp_path: Path) -> None:
    words = _settings(
        tmp_path,
        '[strings]\ndefault_locale = "es"\n'
        '[strings.overrides.de]\n"notices.reset" = "Alles auf Anfang. Was brauchst du?"\n'
        "[strings.overrides.en]\n"
        'notices.slow_down = "Easy there: wait {seconds} s."\n'  # unquoted: a table in TOML, read alike
        '"telegram.not_admin" = "Admins only."\n'
        '[strings.overrides.fr]\n"notices.reset" = "Nouvelle conversation."\n',
    )
    assert words.words("de")(Notices).reset == "Alles auf Anfang. Was brauchst du?"
    assert words.words("de")(Notices).session_ended == catalogue.shipped()["de"]["notices.session_ended"]
    assert words.words("en")(Notices).slow_down == "Easy there: wait {seconds} s."
    assert words.words("fr-CA")(Notices).reset == "Nouvelle conversation."
    assert words.words("fr")(TelegramReplies).not_admin == "Admins only."  # French lacks it: English's
    assert words.words(None)(Notices).reset == catalogue.shipped()["es"]["notices.reset"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            '[strings.overrides.de]\n"notices.rest" = "x"\n',
            "strings.overrides.de.notices.rest: unknown key (no class of strings has it)",
        ),
        (
            '[strings.overrides.de]\n"notices.slow_down" = "Warte."\n',
            "strings.overrides.de.notices.slow_down: placeholders must be {seconds}, not none",
        ),
        (
            '[strings]\ndefault_locale = "fr"\n',
            "strings.default_locale: no strings for 'fr' (have de, en, es, ru)",
        ),
        ('[strings]\ndesk_locale = "it"\n', "strings.desk_locale: no strings for 'it' (have de, en, es, ru)"),
        ('[strings.overrides."no such"]\n', "strings.overrides.no such: not a language tag"),
    ],
)
def test_bad_strings_config_is_one_line_naming_the_key(tmp_path: Path, body: str, error: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _settings(tmp_path, body)
    assert str(refused.value).startswith(error)


# -- Telegram --------------------------------------------------------------------------------------


def _german(key: str) -> str:
    return catalogue.shipped()["de"][key]


@sqlite_only
async def test_a_german_telegram_user_gets_german_notices_and_others_english(
    db: async_sessionmaker[AsyncSession],
) -> None:
    strict = replace(POLICY, user_messages_per_minute=1.0, user_burst=2)
    async with running(db, policy=strict) as telegram:
        fake = telegram.fake
        hans = fake.user("Hans", language_code="de")
        chat = fake.private_chat(hans)
        fake.say(chat, hans, "/reset")
        await telegram.final(chat, _german("notices.reset"))
        fake.say(chat, hans, "/human")
        await telegram.final(chat, _german("notices.handoff_requested"))
        fake.say(chat, hans, "noch da?")  # the third message within the minute
        await telegram.final(chat, _german("notices.slow_down").format(seconds=60))

        ann = fake.user("Ann", language_code="pt-br")  # no Portuguese: the default, English
        other = fake.private_chat(ann)
        fake.say(other, ann, "/reset")
        await telegram.final(other, Notices.reset)


@sqlite_only
async def test_a_telegram_override_in_config_wins(db: async_sessionmaker[AsyncSession]) -> None:
    words = Catalogue(overrides={"de": {"notices.reset": "Frisch angefangen!"}})
    async with running(db, catalogue=words) as telegram:
        fake = telegram.fake
        hans = fake.user("Hans", language_code="de")
        chat = fake.private_chat(hans)
        fake.say(chat, hans, "/reset")
        await telegram.final(chat, "Frisch angefangen!")
        fake.say(chat, hans, "/agent x")  # the handler's own replies speak German too
        await telegram.final(chat, _german("telegram.not_admin"))


@pytest.mark.e2e
@sqlite_only
async def test_a_case_speaks_the_users_language_to_them_and_the_desks_to_moderators(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """The user's language is kept with their conversation, so a moderator joining and the case closing
    reach them in it; the desk speaks its configured language."""
    words = Catalogue(desk_locale="es")
    async with desk_running(db, budgets={**QUICK, "catalogue": words}) as desk:
        fake, spanish = desk.fake, catalogue.shipped()["es"]
        hans = fake.user("Hans", language_code="de")
        chat = fake.private_chat(hans)
        fake.say(chat, hans, "/human")
        await desk.in_chat(chat, _german("notices.handoff_requested"))
        note = await desk.notification(1)

        answer = await desk.answer(fake.press(note, "hd:claim:1", desk.maya))
        assert answer["text"] == spanish["telegram.desk.claimed"].format(id=1)
        await desk.in_chat(chat, _german("handoff.user.claimed").format(name="Maya"))
        answer = await desk.answer(fake.press(note, "hd:resolve:1", desk.maya))
        assert answer["text"] == spanish["telegram.desk.resolved"].format(id=1)
        await desk.in_chat(chat, _german("handoff.user.resolved"))


# -- Discord ---------------------------------------------------------------------------------------


Start = Callable[[], Awaitable[None]]


@pytest.fixture
async def discord_world(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[tuple[FakeDiscord, Start]]:
    """The fake Discord, and a way to start the bridge once a test has set up its people and places. A
    user may send one message at once, then one a minute: the next is refused with a notice."""
    policy = replace(POLICY, user_messages_per_minute=1.0, user_burst=1)
    relay = Relay(db, {"scripted": ScriptedAgent()}, policy)
    started: list[DiscordBridge] = []
    async with FakeDiscord(message_window=0.25) as fake:

        async def start() -> None:
            started.append(DiscordBridge(discord_config(fake), relay))
            await started[-1].start()

        yield fake, start
        for bridge in started:
            await bridge.close(grace=1.0)


@sqlite_only
async def test_discord_speaks_the_slash_commands_locale_and_the_servers_for_messages(
    discord_world: tuple[FakeDiscord, Start],
) -> None:
    fake, start = discord_world
    owner = fake.add_user("owner")
    guild = fake.add_guild("Servidor", owner)
    guild.preferred_locale = "de"
    ana, bo = fake.add_user("ana"), fake.add_user("bo")
    ana.locale = "es-ES"
    fake.add_member(guild, ana)
    fake.add_member(guild, bo)
    channel = fake.add_text_channel(guild, "general")
    await start()
    spanish = catalogue.shipped()["es"]
    reset = await fake.slash(channel, ana, "reset")
    shown = await fake.wait_for_texts(channel, [spanish["notices.reset"]])
    assert shown[0].interaction_id == reset.id
    refused = await fake.slash(channel, ana, "agent", name="scripted")  # not an admin
    callback = await fake.wait_for_callback(refused)
    assert callback["data"]["content"] == spanish["discord.admins_only"] != DiscordReplies.admins_only

    await fake.user_says(channel, bo, f"<@{fake.bot.id}> hi")
    await fake.wait_for_texts(channel, [spanish["notices.reset"], "scripted: hi"])
    await fake.user_says(channel, bo, f"<@{fake.bot.id}> hi again")  # over the rate: told in German
    slow = _german("notices.slow_down").format(seconds=60)
    await fake.wait_for_texts(channel, [spanish["notices.reset"], "scripted: hi", slow])


@sqlite_only
async def test_a_discord_dm_speaks_the_users_last_interaction_locale(
    discord_world: tuple[FakeDiscord, Start],
) -> None:
    fake, start = discord_world
    owner = fake.add_user("owner")
    fake.add_guild("Server", owner)
    ivan, zoe = fake.add_user("ivan"), fake.add_user("zoe")
    ivan.locale = "ru"
    await start()
    russian = catalogue.shipped()["ru"]
    dm = fake.dm_channel(ivan)
    await fake.slash(dm, ivan, "reset")
    await fake.wait_for_texts(dm, [russian["notices.reset"]])
    await fake.user_says(dm, ivan, "привет")  # the rate's one message went to /reset
    await fake.wait_for_texts(dm, [russian["notices.reset"], russian["notices.slow_down"].format(seconds=60)])

    other = fake.dm_channel(zoe)  # never interacted: the default
    await fake.user_says(other, zoe, "hi")
    await fake.wait_for_texts(other, ["scripted: hi"])
    await fake.user_says(other, zoe, "hi again")
    await fake.wait_for_texts(other, ["scripted: hi", Notices.slow_down.format(seconds=60)])
