"""Refund request: the customer pastes tracking numbers; each gets its own verdict.

State diagram: ``refund.mmd``.
"""

from __future__ import annotations

from enum import StrEnum

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.keyboards import cancel_button, inline, main_menu
from bot.sessions import SessionConversationHandler
from conversations.common import cancel_handlers, conversation_key, leave_others
from handlers.common import ack, lang_of, reply
from handlers.refunds import my_refunds, verdict_text
from services.refunds import split_numbers

NAME = "refund"


class RefundState(StrEnum):
    AWAITING_TRACKING_NUMBERS = "awaiting_tracking_numbers"


# ``/refund status``: the customer's requests and their statuses, not a new request.
STATUS_WORDS = frozenset({"status", "statuses", "статус", "статуси", "статусы"})


async def ask_numbers(update: Update, context: BotContext) -> RefundState | int:
    """Asks for one or many tracking numbers (``/refund status``: lists the requests)."""
    if context.args and context.args[0].casefold() in STATUS_WORDS:
        await my_refunds(update, context)
        return SessionConversationHandler.END
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    lang = lang_of(update, context)
    i18n = context.i18n
    limit = context.services.refunds.config.max_numbers
    text = i18n.t(lang, "refund.ask_numbers", limit=limit)
    await reply(update, context, text, inline([cancel_button(i18n, lang, "refund:cancel")]))
    return RefundState.AWAITING_TRACKING_NUMBERS


async def receive_numbers(update: Update, context: BotContext) -> RefundState | int:
    """Judges every number in the message and answers with one verdict per number."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and message.text is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    refunds = context.services.refunds
    limit = refunds.config.max_numbers
    numbers = split_numbers(message.text)
    if not numbers:
        await reply(update, context, i18n.t(lang, "refund.no_numbers"))
        return RefundState.AWAITING_TRACKING_NUMBERS
    if len(numbers) > limit:
        await reply(update, context, i18n.t(lang, "refund.too_many", limit=limit))
        return RefundState.AWAITING_TRACKING_NUMBERS
    verdicts = await refunds.request_many(user.id, message.text)
    await reply(update, context, verdict_text(context, lang, verdicts), main_menu(i18n, lang))
    return SessionConversationHandler.END


def build_refund_conversation() -> SessionConversationHandler:
    return SessionConversationHandler(
        name=NAME,
        entry_points=[
            CommandHandler("refund", ask_numbers),
            CallbackQueryHandler(ask_numbers, pattern=r"^rf:request$"),
        ],
        states={
            RefundState.AWAITING_TRACKING_NUMBERS: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, receive_numbers),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
