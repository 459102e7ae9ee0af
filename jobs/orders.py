"""Resolves label purchases left in ``purchasing`` by a crash or a carrier timeout."""

from __future__ import annotations

import logging

from bot.context import BotContext

_LOGGER = logging.getLogger(__name__)


async def recover_purchases_job(context: BotContext) -> None:
    counts = await context.services.purchase.recover_stuck()
    if counts:
        _LOGGER.info("purchase recovery: %s", counts)
