"""The message catalogue: every string the bot says, in the user's language.

English is the source and lives in code, as classes of string constants (`Notices`, `DeskWords`, ...). Each
such class derives from `Strings` with a `key`, which registers it: `class Notices(Strings, key="notices")`
makes `Notices.reset` the English text of the catalogue key `notices.reset`. Translations are TOML files
in `bridges/locales/` (`de.toml`: `[notices]` then `reset = "..."`), and operators override any key per
locale in `[strings.overrides.<locale>]`. A key a locale lacks falls back to English, never to the key.

Code asks once per turn or handler: `words = catalogue.words(inbound.locale)`, then `words(Notices).reset`
is a plain `str` in that language (an instance of the class whose attributes are the translations).
"""

from __future__ import annotations

import importlib
import pkgutil
import string
import tomllib
from collections.abc import Collection, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

LOCALES_DIR = Path(__file__).with_name("locales")
SOURCE_LOCALE = "en"
STRING_PACKAGES = ("bridges", "agents")
"""Packages whose modules may hold classes of strings; `discover` imports them all so every key is known."""

_CLASSES: dict[str, type[Strings]] = {}
_KEY_OF: dict[type[Strings], str] = {}

S = TypeVar("S", bound="Strings")


class CatalogueError(ValueError):
    """A translation or an override that cannot be used, as one line naming the key and where it is."""

    def __init__(self, where: str, key: str, problem: str) -> None:
        super().__init__(f"{where}: {key}: {problem}")
        self.key = key
        self.problem = problem


class Strings:
    """Base of a class of strings said to users or moderators; its `str` attributes are the English source.

    A subclass names its part of the catalogue: `class Notices(Strings, key="notices")`."""

    def __init_subclass__(cls, *, key: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        known = _CLASSES.get(key)
        where = (cls.__module__, cls.__qualname__)
        if known is not None and (known.__module__, known.__qualname__) != where:
            raise TypeError(f"strings key {key!r} is taken by {known.__qualname__} ({known.__module__})")
        _CLASSES[key] = cls
        _KEY_OF[cls] = key


def registered() -> Mapping[str, type[Strings]]:
    """Every class of strings imported so far, by its key."""
    return dict(_CLASSES)


def english(cls: type[Strings]) -> dict[str, str]:
    """The class's strings by attribute name."""
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") and isinstance(value, str)
    }


def source() -> dict[str, str]:
    """The English text of every key of every class of strings, after importing every module that may
    hold one (so a key of a platform not configured here is known too)."""
    discover()
    return {
        f"{key}.{name}": text for key, cls in sorted(_CLASSES.items()) for name, text in english(cls).items()
    }


def string_modules() -> Iterator[str]:
    """The name of every module of `STRING_PACKAGES`: from the first folder of each (`bridges` is a
    namespace package, which a development setup may spread over two checkouts)."""
    for package_name in STRING_PACKAGES:
        package = importlib.import_module(package_name)
        folder = next(path for path in package.__path__ if Path(path).is_dir())
        for module in pkgutil.walk_packages([folder], f"{package_name}."):
            yield module.name


@cache
def discover() -> None:
    """Import every module that may hold strings once, so each class of strings has registered."""
    for name in string_modules():
        importlib.import_module(name)


def placeholders(text: str) -> frozenset[str]:
    """The `{names}` a text fills in (format specs aside): `"{seconds:.0f} s"` -> {"seconds"}."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name is not None)


def normalize(tag: str) -> str:
    """`pt_BR` / `pt-BR` -> `pt-br`: locales from Telegram, Discord and the config compare alike."""
    return tag.strip().replace("_", "-").lower()


def best_match(tag: str, have: Collection[str]) -> str | None:
    """The locale of `have` to speak for a platform's tag: itself, else its language (`pt-BR` -> `pt`)."""
    tag = normalize(tag)
    return next((c for c in (tag, tag.split("-", 1)[0]) if c in have), None)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """A TOML table of tables as dotted keys: `{"notices": {"reset": "…"}}` -> `("notices.reset", "…")`."""
    for name, value in tree.items():
        if isinstance(value, Mapping):
            yield from flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def checked(table: Mapping[str, Any], where: str) -> dict[str, str]:
    """A locale's translations, each key known and with exactly the placeholders of its English text;
    otherwise one `CatalogueError` line naming the key and `where` it came from."""
    known = source()
    result: dict[str, str] = {}
    for key, text in flatten(table):
        if key not in known:
            raise CatalogueError(where, key, "unknown key (no class of strings has it)")
        if not isinstance(text, str):
            raise CatalogueError(where, key, "must be a string")
        try:
            got = placeholders(text)
        except ValueError as exc:
            raise CatalogueError(where, key, f"not a valid template ({exc})") from None
        expected = placeholders(known[key])
        if got != expected:
            raise CatalogueError(where, key, f"placeholders must be {_names(expected)}, not {_names(got)}")
        result[key] = text
    return result


def _names(names: frozenset[str]) -> str:
    return ", ".join(f"{{{name}}}" for name in sorted(names)) or "none"


def shipped_locales() -> frozenset[str]:
    """The locales Switchboard comes with (English, and one per translation file), without reading them."""
    return frozenset({SOURCE_LOCALE, *(normalize(path.stem) for path in LOCALES_DIR.glob("*.toml"))})


@cache
def shipped() -> Mapping[str, Mapping[str, str]]:
    """The translations that come with Switchboard, by locale, each checked against the English source."""
    tables: dict[str, Mapping[str, str]] = {}
    for path in sorted(LOCALES_DIR.glob("*.toml")):
        where = f"bridges/locales/{path.name}"
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise CatalogueError(where, "(file)", f"not valid TOML: {exc}") from None
        tables[normalize(path.stem)] = checked(table, where)
    return tables


class Catalogue:
    """The strings of every locale: shipped translations with the operator's overrides on top."""

    def __init__(
        self,
        default_locale: str = SOURCE_LOCALE,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        *,
        desk_locale: str | None = None,
    ) -> None:
        tables: dict[str, dict[str, str]] = {locale: dict(t) for locale, t in shipped().items()}
        tables.setdefault(SOURCE_LOCALE, {})
        for locale, table in (overrides or {}).items():
            tag = normalize(locale)
            tables.setdefault(tag, {}).update(checked(table, f"[strings.overrides.{locale}]"))
        default = best_match(default_locale, tables)
        if default is None:
            have = ", ".join(sorted(tables))
            raise CatalogueError(
                "[strings]", "default_locale", f"no strings for {default_locale!r} (have {have})"
            )
        self.default_locale = default
        self._tables = tables
        self.desk_locale = (best_match(desk_locale, tables) if desk_locale else None) or self.default_locale
        """What the moderators' desks speak: one language for everyone there."""
        self._books: dict[str, Phrasebook] = {}

    def adopt(self, other: Catalogue) -> None:
        """Speak `other`'s strings from now on (a reloaded `[strings]`): in place, so every part holding
        this catalogue has them at its next lookup."""
        self.__dict__.update(vars(other))

    def resolve(self, tag: str | None) -> str:
        """The locale to speak for a platform's tag: itself, else its language (`pt-br` -> `pt`), else
        the default."""
        return (best_match(tag, self._tables) if tag else None) or self.default_locale

    @property
    def desk(self) -> Phrasebook:
        """The strings for the moderators' desks."""
        return self.words(self.desk_locale)

    def words(self, tag: str | None = None) -> Phrasebook:
        """The strings for a platform's locale tag (None: the default locale)."""
        locale = self.resolve(tag)
        book = self._books.get(locale)
        if book is None:
            book = self._books[locale] = Phrasebook(locale, self._tables[locale], self._tables[SOURCE_LOCALE])
        return book


class Phrasebook:
    """One locale's view of the catalogue: `words(Notices).reset`. Built once per class and locale."""

    def __init__(self, locale: str, table: Mapping[str, str], english_overrides: Mapping[str, str]) -> None:
        self.locale = locale
        self._table = table
        self._english = english_overrides
        """The operator's English overrides: what a key missing in this locale falls back to first."""
        self._made: dict[type[Strings], Strings] = {}

    def __call__(self, cls: type[S]) -> S:
        """`cls` with this locale's texts: the same attribute names, each a plain `str`."""
        made = self._made.get(cls)
        if made is None:
            made = self._made[cls] = self._make(cls)
        return cast(S, made)

    def _make(self, cls: type[Strings]) -> Strings:
        key = _KEY_OF[cls]
        made = object.__new__(cls)
        for name, text in english(cls).items():
            full = f"{key}.{name}"
            setattr(made, name, self._table.get(full) or self._english.get(full) or text)
        return made
