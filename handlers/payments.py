"""Stateless payment handlers: cancel an invoice; pre-checkout and successful payment of
the Telegram rails (cards through a payment provider, and Stars)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import (
    ApplicationHandlerStop,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from bot.context import BotContext
from bot.keyboards import main_menu
from handlers.common import ack
from services.payments import CARD_PAYLOAD_PREFIX
from views.callbacks import CancelInvoice
from views.screen import Screen, show
from views.screens import topup as topup_screens

_LOGGER = logging.getLogger(__name__)


async def cancel_invoice(update: Update, context: BotContext) -> None:
    """Withdraws a pending invoice from its Cancel button."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    pressed = CancelInvoice.unpack(query.data)
    if pressed is not None and await context.services.payments.cancel(
        user.id, pressed.payment_id
    ):
        await ack(update)
        await show(update, context, topup_screens.cancelled(context.tr), edit=True)
    else:
        await ack(update, topup_screens.cancel_failed(context.tr), alert=True)


async def cancel_command(update: Update, context: BotContext) -> None:
    """/cancel outside a conversation: withdraws a pending invoice if there is one."""
    user = update.effective_user
    assert user is not None
    payments = context.services.payments
    pending = await payments.pending_for_user(user.id)
    if pending is not None and await payments.cancel(user.id, str(pending["_id"])):
        screen = topup_screens.cancelled(context.tr)
        await show(update, context, Screen(screen.text, main_menu(context.i18n, context.lang)))
        return
    await show(update, context, Screen(context.t("cancel.nothing")))


async def pre_checkout(update: Update, context: BotContext) -> None:
    """Answers Telegram within its 10 s limit after checking the payload."""
    query = update.pre_checkout_query
    assert query is not None
    lang = context.i18n.resolve_language(query.from_user.language_code)
    try:
        check = await context.services.payments.check_checkout(
            query.from_user.id, query.invoice_payload, query.currency, query.total_amount
        )
    except Exception:
        # Refused rather than left to time out: nothing is charged and the user can retry.
        text = context.i18n.t(lang, "errors.generic", support=context.settings.support_contact)
        await query.answer(ok=False, error_message=text[:255])
        raise
    if check.ok:
        await query.answer(ok=True)
        return
    message = context.i18n.t(lang, f"stars.refused.{check.reason}")
    await query.answer(ok=False, error_message=message)


async def successful_payment(update: Update, context: BotContext) -> None:
    """Credits the payment once by its charge id: a card payment by the provider's, a
    Stars payment by Telegram's (the outbox tells the user)."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and message.successful_payment is not None and user is not None
    paid = message.successful_payment
    if paid.invoice_payload.startswith(CARD_PAYLOAD_PREFIX):
        outcome = await context.services.payments.on_card_paid(
            user.id,
            paid.invoice_payload,
            telegram_charge_id=paid.telegram_payment_charge_id,
            provider_charge_id=paid.provider_payment_charge_id,
            currency=paid.currency,
            total_amount=paid.total_amount,
        )
        _LOGGER.info("card payment handled: %s", outcome)
        return
    outcome = await context.services.payments.on_stars_paid(
        user.id, paid.invoice_payload, paid.telegram_payment_charge_id, paid.total_amount
    )
    _LOGGER.info("stars payment handled: %s", outcome)


def _ends_the_update(
    callback: Callable[[Update, BotContext], Coroutine[Any, Any, None]],
) -> Callable[[Update, BotContext], Coroutine[Any, Any, None]]:
    """No gate or feature handler after the payments group sees the update, even when the
    callback failed (the error handler still gets the error)."""

    @functools.wraps(callback)
    async def run(update: Update, context: BotContext) -> None:
        try:
            await callback(update, context)
        except Exception as exc:  # noqa: BLE001 - reported below, then the update ends
            await context.application.process_error(update, exc)
        raise ApplicationHandlerStop

    return run


def build_priority_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    """For the payments group, right after deduplication: a pre-checkout query must be
    answered within 10 s and a successful payment credited at once, whatever the flood,
    blocked, maintenance or session gates would say (the money has moved already)."""
    return [
        PreCheckoutQueryHandler(_ends_the_update(pre_checkout)),
        MessageHandler(filters.SUCCESSFUL_PAYMENT, _ends_the_update(successful_payment)),
    ]


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CallbackQueryHandler(cancel_invoice, pattern=CancelInvoice.pattern()),
    ]


def build_fallback_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [CommandHandler("cancel", cancel_command)]
