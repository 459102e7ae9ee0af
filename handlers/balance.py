"""/balance: current balance, pending top-up and the ledger, 10 entries a page
(rendered by ``views/screens/balance.py``)."""

from __future__ import annotations

from datetime import datetime

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.i18n import I18n
from handlers.common import ack
from views.callbacks import BalancePage, MenuBalance
from views.screen import show
from views.screens import balance as screens
from views.translator import Translator


def format_when(i18n: I18n, lang: str, when: datetime) -> str:
    return Translator(i18n, lang).when(when)


async def show_balance(update: Update, context: BotContext) -> None:
    """Shows the balance, any pending top-up and the newest ledger entries."""
    user = update.effective_user
    assert user is not None
    query = update.callback_query
    pressed = BalancePage.unpack(query.data if query else None)
    await ack(update)
    services = context.services
    balance = await services.balance.balance_cents(user.id)
    payment = await services.payments.pending_for_user(user.id)
    pending = None
    if payment is not None and payment.get("expires_at"):
        pending = screens.Pending(
            int(payment["amount_cents"]), str(payment["provider"]), payment["expires_at"]
        )
    history = await services.balance.history(user.id, pressed.page if pressed else 1)
    screen = screens.balance(context.tr, balance, pending, history)
    await show(update, context, screen, edit=query is not None)


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("balance", show_balance),
        CallbackQueryHandler(show_balance, pattern=MenuBalance.pattern()),
        CallbackQueryHandler(show_balance, pattern=BalancePage.pattern()),
    ]
