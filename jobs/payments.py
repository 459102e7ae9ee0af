"""Payment jobs: reconcile open invoices with OxaPay, alert admins about stale ones."""

from __future__ import annotations

import logging

from bot.context import BotContext
from bot.metrics import PAYMENT_OUTCOMES

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
