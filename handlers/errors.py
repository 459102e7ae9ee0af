"""The one error handler: log with context, apologise to the user, alert admins once."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Forbidden, NetworkError, RetryAfter, TelegramError

from bot.context import BotContext, NotReady
from bot.metrics import ERRORS
from handlers.common import lang_of

_LOGGER = logging.getLogger(__name__)


async def error_handler(update: object, context: BotContext) -> None:
    error = context.error
    error_type = type(error).__name__
    ERRORS.labels(type=error_type).inc()
    _LOGGER.error("unhandled error while handling an update", exc_info=error)
    if isinstance(error, NotReady):
        return
    if isinstance(error, Forbidden) and isinstance(update, Update) and update.effective_user:
        # The user blocked the bot: stop messaging them until they write again.
        await context.services.users.mark_bot_blocked(update.effective_user.id)
        return
    if isinstance(error, RetryAfter | NetworkError) and not isinstance(update, Update):
        return
    if not isinstance(update, Update):
        return
    user = update.effective_user
    try:
        if update.callback_query is not None:
            await update.callback_query.answer()
        if update.effective_chat is not None:
            text = context.i18n.t(
                lang_of(update, context),
                "errors.generic",
                support=context.settings.support_contact,
            )
            await context.bot.send_message(update.effective_chat.id, text)
    except TelegramError:
        _LOGGER.warning("could not tell the user about the error", exc_info=True)
    alert = context.i18n.t(
        context.i18n.default,
        "admin.alert.error",
        error_type=error_type,
        update_id=update.update_id,
        user_id=user.id if user else "-",
    )
    # One alert per error type per dedup window, however many users hit it.
    await context.services.notifier.alert_admins(
        alert, dedup_key=f"error:{error_type}", windowed=True
    )
