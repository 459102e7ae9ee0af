"""``/format`` (and "🖨 Label format" in the main menu): the file format of the customer's
next labels, one of ``LABEL_FORMATS`` (4x6 PDF by default, letter-size PDF, PNG, ZPL).

A button names the format it sets; a forged or unknown one stores nothing and says so.
Labels already bought keep their format ("My labels" offers the others the carrier links).
"""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.i18n import I18n
from bot.keyboards import inline
from handlers.common import ack, lang_of, reply
from models.shipping import LABEL_FORMATS


def format_name(i18n: I18n, lang: str, key: str) -> str:
    return i18n.t(lang, f"format.name.{key}")


def _menu(i18n: I18n, lang: str, current: str) -> InlineKeyboardMarkup:
    rows = []
    for key in LABEL_FORMATS:
        mark = "✅ " if key == current else ""
        rows.append([(mark + format_name(i18n, lang, key), f"fmt:set:{key}")])
    rows.append([(i18n.t(lang, "common.menu"), "menu:main")])
    return inline(rows)


async def show_format(update: Update, context: BotContext) -> None:
    """Shows the current label format and a button per format."""
    user = update.effective_user
    assert user is not None
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    current = await context.services.users.label_format_of(user.id)
    text = i18n.t(lang, "format.title", current=format_name(i18n, lang, current))
    await reply(update, context, text, _menu(i18n, lang, current))


async def set_format(update: Update, context: BotContext) -> None:
    """Stores the pressed format; an unknown one is refused with nothing stored."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    key = query.data.rsplit(":", 1)[-1]
    if not await context.services.users.set_label_format(user.id, key):
        await ack(update, i18n.t(lang, "format.unknown"), alert=True)
        return
    await ack(update)
    text = i18n.t(lang, "format.saved", name=format_name(i18n, lang, key))
    await reply(update, context, text, _menu(i18n, lang, key), edit=True)


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("format", show_format),
        CallbackQueryHandler(show_format, pattern=r"^menu:format$"),
        CallbackQueryHandler(set_format, pattern=r"^fmt:set:[A-Za-z0-9_.-]{1,32}$"),
    ]
