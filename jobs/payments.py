"""Payment jobs: reconcile open invoices with OxaPay, alert admins about stale ones."""

from __future__ import annotations

import logging

from telegram import StarTransaction, TransactionPartnerUser
from telegram.error import TelegramError

from bot.context import BotContext
from bot.metrics import PAYMENT_OUTCOMES
from services.payments import StarsTransaction

LEGACY_STARS_CURSOR = "stars_transactions_seen"

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


def _stars_transaction(tx: StarTransaction) -> StarsTransaction:
    partner = tx.source if tx.source is not None else tx.receiver
    user = partner if isinstance(partner, TransactionPartnerUser) else None
    return StarsTransaction(
        tx_id=tx.id,
        incoming=tx.source is not None,
        user_id=user.user.id if user is not None else None,
        payload=(user.invoice_payload or "") if user is not None else "",
        amount=tx.amount,
    )


async def reconcile_stars_job(context: BotContext) -> None:
    """Reads Telegram's Stars history from where it was read: credits payments we missed,
    settles refunds whose answer was lost, alerts admins about refunds still unknown."""

    async def history(offset: int, limit: int) -> list[StarsTransaction] | None:
        try:
            page = await context.bot.get_star_transactions(offset=offset, limit=limit)
        except TelegramError as exc:
            _LOGGER.warning("could not read Stars transactions: %s", type(exc).__name__)
            return None
        return [_stars_transaction(tx) for tx in page.transactions]

    # The count an earlier version kept; only used until the new cursor exists.
    legacy = await context.services.runtime.get_counter(LEGACY_STARS_CURSOR)
    counts = await context.services.payments.reconcile_stars(history, legacy_offset=legacy)
    for outcome, count in counts.items():
        PAYMENT_OUTCOMES.labels(provider="stars", source="reconcile", outcome=outcome).inc(count)
    if counts:
        _LOGGER.info("stars reconciliation: %s", counts)
