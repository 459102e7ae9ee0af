"""Delivers the outbox: admin alerts and user notices, with retries.

Leader only (registered with ``leader_only``), and the run stops claiming as soon as this
instance stops holding the poller lease, so a standby never sends a notice.
"""

from __future__ import annotations

import logging

from telegram import InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot.context import BotContext
from bot.lease import holds_lease
from bot.metrics import OUTBOX_AGE, OUTBOX_DELIVERIES, OUTBOX_DEPTH
from services.notifications import DeliveryError
from storage.outbox import OutboxMessage
from views.screen import disarm

_LOGGER = logging.getLogger(__name__)


async def deliver_outbox_job(context: BotContext) -> None:
    """Sends due outbox messages; Telegram errors become retries or permanent failures."""
    bot = context.bot

    async def send(message: OutboxMessage) -> None:
        markup = (
            InlineKeyboardMarkup.de_json(message.reply_markup, bot)
            if message.reply_markup
            else None
        )
        try:
            if message.edit_message_id is not None:
                # Gone, unchanged or too old to edit: nothing is left to disarm.
                await disarm(bot, message.chat_id, message.edit_message_id, message.text)
                return
            await bot.send_message(message.chat_id, message.text, reply_markup=markup)
        except RetryAfter as exc:
            retry_after = exc.retry_after
            seconds = retry_after if isinstance(retry_after, int) else retry_after.total_seconds()
            raise DeliveryError("rate limited", retry_after=float(seconds)) from exc
        except Forbidden as exc:
            # The user blocked the bot: stop messaging them until they write again.
            await context.services.users.mark_bot_blocked(message.chat_id)
            raise DeliveryError(f"forbidden: {exc.message}", permanent=True) from exc
        except BadRequest as exc:
            raise DeliveryError(f"bad request: {exc.message}", permanent=True) from exc
        except NetworkError as exc:
            raise DeliveryError(f"network: {exc.message}") from exc

    def should_stop() -> bool:
        return not holds_lease(context.bot_data)

    report = await context.services.outbox.deliver_due(send, should_stop=should_stop)
    OUTBOX_DELIVERIES.labels(result="delivered").inc(report.delivered)
    OUTBOX_DELIVERIES.labels(result="retried").inc(report.retried)
    OUTBOX_DELIVERIES.labels(result="failed").inc(report.failed)
    depth, age = await context.services.outbox.stats()
    OUTBOX_DEPTH.set(depth)
    OUTBOX_AGE.set(age)
