"""Inline keyboard builders shared by handlers and conversations."""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import I18n

Button = tuple[str, str]  # (label, callback_data)


def inline(rows: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup:
    for row in rows:
        for _, data in row:
            # Telegram rejects callback_data over 64 bytes; catch it where it is built.
            if not 1 <= len(data.encode()) <= 64:
                raise ValueError(f"callback_data must be 1-64 bytes: {data!r}")
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


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
