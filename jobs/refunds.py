"""Asks the carrier to void requested labels and credits approved refunds; reminds
unused labels before their last refund day and files automatic refunds on it."""

from __future__ import annotations

import logging

from bot.context import BotContext

_LOGGER = logging.getLogger(__name__)


async def check_refunds_job(context: BotContext) -> None:
    counts = await context.services.refunds.process_due()
    if counts:
        _LOGGER.info("refund check: %s", counts)


async def remind_refunds_job(context: BotContext) -> None:
    """Reminds unused labels before their last refund day; files automatic refunds on it."""
    refunds = context.services.refunds
    reminded = await refunds.remind_unused()
    automatic = await refunds.auto_refund_last_day()
    if reminded or automatic:
        _LOGGER.info("refund reminders: %d sent, automatic refunds: %s", reminded, automatic)
