"""A translator bound to one language: what a screen function needs to render."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from babel.dates import format_datetime

from bot.i18n import I18n


@dataclass(frozen=True)
class Translator:
    i18n: I18n
    lang: str

    def t(self, key: str, /, **kwargs: Any) -> str:
        return self.i18n.t(self.lang, key, **kwargs)

    def money(self, amount_cents: int, currency: str = "USD") -> str:
        return self.i18n.money(self.lang, amount_cents, currency)

    def when(self, moment: datetime) -> str:
        """A date and time in the user's locale, short form."""
        return format_datetime(moment, "short", tzinfo=None, locale=self.lang)

    def has(self, key: str) -> bool:
        return key in self.i18n.catalogs[self.i18n.default].messages
