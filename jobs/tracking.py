"""Follows purchased labels' tracking and tells customers at each milestone."""

from __future__ import annotations

import logging

from bot.context import BotContext

_LOGGER = logging.getLogger(__name__)


async def check_tracking_job(context: BotContext) -> None:
    counts = await context.services.tracking.check_due()
    if counts:
        _LOGGER.info("tracking check: %s", counts)
