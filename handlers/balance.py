"""/balance: current balance, pending top-up and the ledger, 10 entries a page."""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_datetime
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.i18n import I18n
from bot.keyboards import Button, inline
from handlers.common import ack, lang_of, reply


def format_when(i18n: I18n, lang: str, when: datetime) -> str:
    return format_datetime(when, "short", tzinfo=None, locale=lang)


async def show_balance(update: Update, context: BotContext) -> None:
    """Shows the balance, any pending top-up and the newest ledger entries."""
    user = update.effective_user
    assert user is not None
    page = 1
    query = update.callback_query
    if query is not None and query.data and query.data.startswith("bal:page:"):
        try:
            page = int(query.data.rsplit(":", 1)[-1])
        except ValueError:
            page = 1
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    services = context.services
    balance = await services.balance.balance_cents(user.id)
    lines = [i18n.t(lang, "balance.title", balance=i18n.money(lang, balance))]
    pending = await services.payments.pending_for_user(user.id)
    if pending is not None and pending.get("expires_at"):
        lines.append(
            i18n.t(
                lang,
                "balance.pending",
                amount=i18n.money(lang, pending["amount_cents"]),
                provider=pending["provider"],
                expires=format_when(i18n, lang, pending["expires_at"]),
            )
        )
    history = await services.balance.history(user.id, page)
    lines.append("")
    if not history.entries:
        lines.append(i18n.t(lang, "balance.history_empty"))
    else:
        lines.append(
            i18n.t(lang, "balance.history_title", page=history.page, pages=history.pages)
        )
        for entry in history.entries:
            sign = "+" if entry.amount_cents > 0 else "−"
            lines.append(
                i18n.t(
                    lang,
                    "balance.entry",
                    date=format_when(i18n, lang, entry.created_at),
                    amount=sign + i18n.money(lang, abs(entry.amount_cents)),
                    kind=i18n.t(lang, f"ledger.kind.{entry.kind}"),
                )
            )
    nav: list[Button] = []
    if history.page > 1:
        nav.append((i18n.t(lang, "common.prev"), f"bal:page:{history.page - 1}"))
    if history.page < history.pages:
        nav.append((i18n.t(lang, "common.next"), f"bal:page:{history.page + 1}"))
    rows = [nav] if nav else []
    rows.append(
        [(i18n.t(lang, "menu.topup"), "menu:topup"), (i18n.t(lang, "common.menu"), "menu:main")]
    )
    await reply(update, context, "\n".join(lines), inline(rows), edit=query is not None)


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("balance", show_balance),
        CallbackQueryHandler(show_balance, pattern=r"^(menu:balance|bal:page:\d{1,4})$"),
    ]
