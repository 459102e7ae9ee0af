"""Payment jobs: reconcile open invoices with OxaPay, alert admins about stale ones."""

from __future__ import annotations

import logging

from telegram import TransactionPartnerUser
from telegram.error import TelegramError

from bot.context import BotContext
from bot.metrics import PAYMENT_OUTCOMES
from services.payments import StarsTransaction

STARS_PAGE = 100
STARS_CURSOR = "stars_transactions_seen"

_LOGGER = logging.getLogger(__name__)


async def reconcile_payments_job(context: BotContext) -> None:
    """A lost callback never loses money: paid invoices are credited from here too."""
    counts = await context.services.payments.reconcile()
    for outcome, count in counts.items():
        PAYMENT_OUTCOMES.labels(provider="oxapay", source="reconcile", outcome=outcome).inc(count)
    if counts:
        _LOGGER.info("reconciliation: %s", counts)


async def stale_payments_job(context: BotContext) -> None:
    alerted = await context.services.payments.alert_stale()
    if alerted:
        _LOGGER.info("stale payment alerts queued: %d", alerted)


async def reconcile_stars_job(context: BotContext) -> None:
    """Reads new Stars transactions from Telegram and credits any payment we missed."""
    runtime = context.services.runtime
    seen = await runtime.get_counter(STARS_CURSOR)
    try:
        page = await context.bot.get_star_transactions(offset=seen, limit=STARS_PAGE)
    except TelegramError as exc:
        _LOGGER.warning("could not read Stars transactions: %s", type(exc).__name__)
        return
    incoming = [
        StarsTransaction(tx.id, tx.source.user.id, tx.source.invoice_payload or "", tx.amount)
        for tx in page.transactions
        if isinstance(tx.source, TransactionPartnerUser) and tx.source.invoice_payload
    ]
    counts = await context.services.payments.reconcile_stars(incoming)
    for outcome, count in counts.items():
        PAYMENT_OUTCOMES.labels(provider="stars", source="reconcile", outcome=outcome).inc(count)
    if page.transactions:
        await runtime.set_counter(STARS_CURSOR, seen + len(page.transactions))
