"""Inline keyboard builders shared by handlers and conversations."""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardMarkup

from bot.i18n import I18n
from views.keyboards import keyboard

Button = tuple[str, str]  # (label, callback_data)


def inline(rows: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup:
    """``views.keyboards.keyboard`` (the one builder, with the 64-byte check), kept for
    the callers not yet moved to ``views/``."""
    return keyboard(rows)


MAIN_MENU_ITEMS: tuple[tuple[str, str], ...] = (
    ("menu.order", "menu:order"),
    ("menu.labels", "menu:labels"),
    ("menu.templates", "menu:templates"),
    ("menu.balance", "menu:balance"),
    ("menu.topup", "menu:topup"),
    ("menu.refunds", "menu:refunds"),
    ("menu.support", "menu:support"),
    ("menu.language", "menu:language"),
    ("menu.format", "menu:format"),
    ("menu.help", "menu:help"),
)


def main_menu(i18n: I18n, lang: str) -> InlineKeyboardMarkup:
    return inline([[(i18n.t(lang, key), data)] for key, data in MAIN_MENU_ITEMS])


def language_menu(i18n: I18n) -> InlineKeyboardMarkup:
    from bot.i18n import LANGUAGE_NAMES

    return inline([[(LANGUAGE_NAMES.get(code, code), f"lang:{code}")] for code in i18n.languages])


def cancel_button(i18n: I18n, lang: str, data: str) -> list[Button]:
    return [(i18n.t(lang, "common.cancel"), data)]
