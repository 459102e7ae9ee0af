"""The legal texts (``/terms``, ``/privacy``, ``/paysupport``) and the command menus.

A text is the operator's file for that document and language when ``legal.texts`` names
one (checked at start-up: Telegram HTML, at most 4096 characters; sent as written), else
the catalog message ``legal.<document>`` filled in from the real settings (retention
periods, refund window, support contact, terms version), whose arguments ``I18n.t``
escapes. ``tests/unit/test_legal.py`` checks every default fits one message.
"""

from __future__ import annotations

from telegram import BotCommand

from bot.i18n import I18n
from bot.settings import LEGAL_DOCUMENTS, Settings

# The customer command menu, in order; descriptions are ``commands.<name>``.
COMMANDS = (
    "start",
    "help",
    "order",
    "labels",
    "templates",
    "presets",
    "bulk",
    "refund",
    "balance",
    "topup",
    "support",
    "paysupport",
    "terms",
    "privacy",
    "delete_my_data",
    "language",
    "cancel",
    "notifications",
    "autorefund",
    "format",
)


class LegalTexts:
    def __init__(self, i18n: I18n, settings: Settings) -> None:
        self._i18n = i18n
        self._settings = settings
        self._overrides: dict[tuple[str, str], str] = {}
        for document, by_language in settings.legal.texts.items():
            for language, path in by_language.items():
                self._overrides[(document, language)] = path.read_text(encoding="utf-8").strip()

    @property
    def terms_version(self) -> str:
        return self._settings.legal.terms_version

    def render(self, document: str, lang: str) -> str:
        if document not in LEGAL_DOCUMENTS:
            raise KeyError(document)
        override = self._overrides.get((document, lang))
        if override is not None:
            return override
        s = self._settings
        return self._i18n.t(
            lang,
            f"legal.{document}",
            version=s.legal.terms_version,
            support=s.support_contact,
            refund_min_days=s.refunds.min_label_age_days,
            refund_max_days=s.refunds.max_label_age_days,
            session_minutes=s.sessions.ttl_minutes,
            processed_hours=s.updates.processed_ttl_hours,
            backup_days=s.legal.backup_retention_days,
            log_days=s.legal.log_retention_days,
        )


def command_menu(i18n: I18n, lang: str) -> list[BotCommand]:
    return [BotCommand(name, i18n.t(lang, f"commands.{name}")) for name in COMMANDS]


def command_menus(i18n: I18n) -> list[tuple[str | None, list[BotCommand]]]:
    """``setMyCommands`` calls: the default language for everyone (no ``language_code``),
    then one menu per catalog for users whose Telegram app is in that language."""
    menus: list[tuple[str | None, list[BotCommand]]] = [
        (None, command_menu(i18n, i18n.default))
    ]
    menus.extend((lang, command_menu(i18n, lang)) for lang in i18n.languages)
    return menus
