"""Message catalogs (gettext ``.po`` files read with Babel) and locale-aware formatting.

Message ids are stable keys (``start.welcome``); the English catalog holds the source
text. Placeholders use ``str.format`` names. Every ``str`` argument is HTML-escaped
unless wrapped in ``Html`` (already-safe markup built by us), so user input can never
break a message sent with ``parse_mode=HTML``.
"""

from __future__ import annotations

import datetime as dt
import html
import string
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.messages.pofile import read_po
from babel.numbers import format_currency

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"

LANGUAGE_NAMES = {"en": "English", "ru": "Русский", "uk": "Українська"}


class Html(str):
    """Markup that is already safe; ``I18n.t`` inserts it without escaping."""


class MissingMessage(KeyError):
    pass


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@dataclass(frozen=True)
class Catalog:
    language: str
    messages: dict[str, str]


class I18n:
    def __init__(self, catalogs: dict[str, Catalog], default: str = "en") -> None:
        if default not in catalogs:
            raise ValueError(f"no catalog for the default language {default!r}")
        self.catalogs = catalogs
        self.default = default

    @classmethod
    def load(
        cls, languages: tuple[str, ...], default: str = "en", directory: Path = LOCALES_DIR
    ) -> I18n:
        catalogs: dict[str, Catalog] = {}
        for language in languages:
            path = directory / language / "LC_MESSAGES" / f"{DOMAIN}.po"
            with path.open("rb") as handle:
                po = read_po(handle, locale=language)
            messages = {
                str(message.id): str(message.string)
                for message in po
                if message.id and message.string
            }
            catalogs[language] = Catalog(language, messages)
        return cls(catalogs, default)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.catalogs)

    def resolve_language(self, code: str | None) -> str:
        """Maps Telegram's ``language_code`` (``ru``, ``uk-UA``, ``pt-br``) to a catalog."""
        if code:
            base = code.replace("_", "-").split("-")[0].lower()
            if base in self.catalogs:
                return base
        return self.default

    def t(self, language: str, key: str, /, **kwargs: Any) -> str:
        catalog = self.catalogs.get(language) or self.catalogs[self.default]
        text = catalog.messages.get(key)
        if text is None:
            text = self.catalogs[self.default].messages.get(key)
        if text is None:
            raise MissingMessage(key)
        if not kwargs:
            return text
        safe = {
            name: value if isinstance(value, Html) or not isinstance(value, str)
            else html.escape(value, quote=False)
            for name, value in kwargs.items()
        }
        return text.format(**safe)

    def money(self, language: str, amount_cents: int, currency: str = "USD") -> str:
        """Formats integer cents in the user's locale (``$1,234.50``, ``1 234,50 $``)."""
        amount = Decimal(amount_cents) / 100
        return format_currency(amount, currency, locale=Locale.parse(language))

    def date(self, language: str, day: dt.date) -> str:
        """A calendar day in the user's locale (``January 28, 2025``, ``28 января 2025 г.``)."""
        return format_date(day, "long", locale=Locale.parse(language))
