"""Resolves label purchases left in ``purchasing`` by a crash or a carrier timeout."""

from __future__ import annotations

import logging
from datetime import timedelta

from telegram.error import Forbidden, TelegramError

from bot.context import BotContext
from handlers.label_files import send_label_with_receipt
from providers.errors import ProviderError

_LOGGER = logging.getLogger(__name__)


async def recover_purchases_job(context: BotContext) -> None:
    counts = await context.services.purchase.recover_stuck()
    if counts:
        _LOGGER.info("purchase recovery: %s", counts)


async def deliver_labels_job(context: BotContext) -> None:
    """Every bought label reaches its customer: PDFs not yet in the chat are sent again,
    with the receipt unless an earlier delivery already carried it."""
    services = context.services
    i18n = context.i18n
    for order in await services.purchase.undelivered(older_than=timedelta(seconds=60)):
        user_id = int(order["user_id"])
        lang = await services.users.language_of(user_id, i18n.default)
        try:
            await send_label_with_receipt(context, user_id, lang, order)
        except Forbidden:
            await services.users.mark_bot_blocked(user_id)
            await services.purchase.mark_delivered(order["_id"])  # nothing more we can do
        except (TelegramError, ProviderError) as exc:
            _LOGGER.warning("label delivery failed, retrying later: %s", type(exc).__name__)
