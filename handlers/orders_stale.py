"""Order buttons that arrive when no order conversation is waiting for them.

A second tap on Pay after the label was bought, or a button from an old message: the
customer gets an explanation instead of silence, and nothing is bought twice.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot.context import BotContext
from handlers.common import ack, lang_of


async def stale_order_button(update: Update, context: BotContext) -> None:
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang = lang_of(update, context)
    parts = query.data.split(":")
    key = "order.stale"
    if len(parts) >= 3 and parts[1] == "pay":
        order = await context.services.orders.get(user.id, parts[2])
        if order is not None and order["status"] in ("purchasing", "purchased"):
            key = "order.already_paid"
    await ack(update, context.i18n.t(lang, key), alert=True)


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [CallbackQueryHandler(stale_order_button, pattern=r"^order:")]
