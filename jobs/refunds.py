"""Asks the carrier to void requested labels and credits approved refunds."""

from __future__ import annotations

import logging

from bot.context import BotContext

_LOGGER = logging.getLogger(__name__)


async def check_refunds_job(context: BotContext) -> None:
    counts = await context.services.refunds.process_due()
    if counts:
        _LOGGER.info("refund check: %s", counts)
