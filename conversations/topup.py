"""Top-up: amount → method → invoice (a card invoice through Telegram Payments, an OxaPay
link, or a Stars invoice). Only the rails the operator enabled are offered; with none,
top-up says payments are unavailable and points to support.

State diagram: ``topup.mmd``. The invoice message carries its own Cancel button, handled
statelessly (``handlers/payments.py``), so the conversation ends once the invoice exists;
the messages showing an invoice's buttons are recorded with the payment and lose them
once it is paid, expired or cancelled. Started from the order summary (``order:topup``),
the amount prompt offers what the order needs, and the invoice and the payment
confirmation offer the way back. Screens: ``views/screens/topup.py``.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from telegram import LabeledPrice, Message, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.sessions import SessionConversationHandler
from conversations.common import cancel_handlers, conversation_key, leave_others
from handlers.common import ack
from services.amounts import AmountError, parse_amount
from services.payments import CARD, OXAPAY, STARS, CreatedTopUp, TopUpError, stars_for
from views.callbacks import MenuTopUp, OrderTopUp, TopUpAmount, TopUpMethod, TopUpTerms
from views.screen import disarm, show
from views.screens import topup as screens

NAME = "topup"
_LOGGER = logging.getLogger(__name__)
# Rail → the method name its button carries.
_METHODS = {CARD: "card", OXAPAY: "crypto", STARS: "stars"}


class TopUpState(StrEnum):
    AWAITING_TERMS = "awaiting_terms"
    AWAITING_AMOUNT = "awaiting_amount"
    AWAITING_METHOD = "awaiting_method"


async def ask_amount(update: Update, context: BotContext) -> TopUpState | int:
    """Asks for the terms once per version, then how much to add (or shows the invoice
    already waiting for payment)."""
    await ack(update)
    user = update.effective_user
    assert user is not None
    key = conversation_key(update)
    query = update.callback_query
    from_order = OrderTopUp.unpack(query.data if query else None) is not None
    leave_others(context, key, keep={NAME, "order"} if from_order else {NAME})
    if not context.services.payments.config.rails:
        screen = screens.unavailable(context.tr, context.settings.support_contact)
        await show(update, context, screen)
        return SessionConversationHandler.END
    accepted = await context.services.privacy.accepted_terms(user.id)
    if accepted != context.legal.terms_version:
        await context.services.sessions.set_data(key, NAME, {"from_order": from_order})
        await _ask_terms(update, context, again=accepted is not None)
        return TopUpState.AWAITING_TERMS
    return await _ask_amount(update, context, from_order=from_order)


async def _ask_terms(update: Update, context: BotContext, *, again: bool) -> None:
    screen = screens.terms(context.tr, context.legal.terms_version, again=again)
    await show(update, context, screen)


async def accept_terms(update: Update, context: BotContext) -> TopUpState | int:
    """Records the acceptance of the version on the button, then asks for the amount; a
    button of an older version shows the current terms again."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    await ack(update)
    version = context.legal.terms_version
    pressed = TopUpTerms.unpack(query.data)
    if pressed is None or pressed.version != version:
        await _ask_terms(update, context, again=True)
        return TopUpState.AWAITING_TERMS
    await context.services.privacy.accept_terms(user.id, version)
    await show(update, context, screens.terms_accepted(context.tr, version), edit=True)
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    return await _ask_amount(update, context, from_order=bool(data.get("from_order")))


async def _order_shortfall(context: BotContext, user_id: int) -> tuple[str | None, int | None]:
    """(draft id, what its price lacks in the balance) of the order the top-up came from."""
    draft = await context.services.orders.draft(user_id)
    if draft is None:
        return None, None
    price = draft.get("price_cents")
    if not isinstance(price, int):
        return str(draft["_id"]), None
    balance = await context.services.balance.balance_cents(user_id)
    return str(draft["_id"]), max(price - balance, 0) or None


async def _ask_amount(
    update: Update, context: BotContext, *, from_order: bool
) -> TopUpState | int:
    user = update.effective_user
    assert user is not None
    key = conversation_key(update)
    payments = context.services.payments
    pending = await payments.pending_for_user(user.id)
    if pending is not None:
        invoice = screens.Invoice(
            str(pending["_id"]), int(pending["amount_cents"]), pending.get("payment_url")
        )
        sent = await show(update, context, screens.pending_exists(context.tr, invoice))
        await payments.remember_message(user.id, invoice.payment_id, sent.chat_id, sent.message_id)
        return SessionConversationHandler.END
    draft_id, shortfall = await _order_shortfall(context, user.id) if from_order else (None, None)
    data: dict[str, Any] = {"return_to": "order" if from_order else "", "draft_id": draft_id}
    config = payments.config
    screen = screens.amount_prompt(
        context.tr, config.min_cents, config.max_cents, payments.suggested_amounts(shortfall)
    )
    prompt = await show(update, context, screen)
    data["prompt_id"] = prompt.message_id
    await context.services.sessions.set_data(key, NAME, data)
    return TopUpState.AWAITING_AMOUNT


async def store_amount(update: Update, context: BotContext) -> TopUpState:
    """Validates the typed amount, stores it with the session and asks for the method."""
    message = update.effective_message
    assert message is not None and message.text is not None
    config = context.services.payments.config
    try:
        cents = parse_amount(message.text, context.lang, context.services.payments.limits)
    except AmountError as exc:
        screen = screens.amount_error(context.tr, exc.code, config.min_cents, config.max_cents)
        await show(update, context, screen)
        return TopUpState.AWAITING_AMOUNT
    return await _ask_method(update, context, cents, supersede=True)


async def choose_amount(update: Update, context: BotContext) -> TopUpState:
    """A ready amount from the prompt: the prompt becomes the method choice."""
    query = update.callback_query
    assert query is not None
    await ack(update)
    pressed = TopUpAmount.unpack(query.data)
    limits = context.services.payments.limits
    if pressed is None or not limits.min_cents <= pressed.cents <= limits.max_cents:
        # An amount from before the limits changed: ask again rather than charge it.
        small = pressed is not None and pressed.cents < limits.min_cents
        code = "too_small" if small else "too_large"
        screen = screens.amount_error(context.tr, code, limits.min_cents, limits.max_cents)
        await show(update, context, screen)
        return TopUpState.AWAITING_AMOUNT
    return await _ask_method(update, context, pressed.cents, edit=True)


async def _ask_method(
    update: Update, context: BotContext, cents: int, *, edit: bool = False,
    supersede: bool = False,
) -> TopUpState:
    """The method choice; with ``supersede`` (a typed amount) the amount prompt, now
    answered, loses its ready-amount buttons."""
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    prompt = data.pop("prompt_id", None)
    chat = update.effective_chat
    if supersede and isinstance(prompt, int) and chat is not None:
        await disarm(context.bot, chat.id, prompt)
    await context.services.sessions.set_data(key, NAME, {**data, "amount_cents": cents})
    config = context.services.payments.config
    methods = [
        screens.Method(
            _METHODS[rail], stars_for(cents, config.stars_per_usd) if rail == STARS else 0
        )
        for rail in config.rails
    ]
    await show(update, context, screens.method_choice(context.tr, cents, methods), edit=edit)
    return TopUpState.AWAITING_METHOD


async def create_invoice(update: Update, context: BotContext) -> TopUpState | int:
    """Creates the invoice with the chosen method and ends the conversation."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    await ack(update)
    tr = context.tr
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    cents = data.get("amount_cents")
    if not isinstance(cents, int):
        return await ask_amount(update, context)
    payments = context.services.payments
    pressed = TopUpMethod.unpack(query.data)
    method = pressed.method if pressed else ""
    if method not in (_METHODS[rail] for rail in payments.config.rails):
        # A button from before the operator turned this rail off.
        await show(update, context, screens.method_off(tr))
        return TopUpState.AWAITING_METHOD
    from_order = data.get("return_to") == "order"
    draft = data.get("draft_id") if from_order else None
    draft_id = draft if isinstance(draft, str) else None
    try:
        if method == "stars":
            created = await payments.create_stars_topup(user.id, cents, from_draft=draft_id)
        elif method == "card":
            created = await payments.create_card_topup(user.id, cents, from_draft=draft_id)
        else:
            created = await payments.create_oxapay_topup(user.id, cents, from_draft=draft_id)
    except TopUpError:
        await show(update, context, screens.provider_unavailable(tr))
        return TopUpState.AWAITING_METHOD
    invoice = screens.Invoice(created.payment_id, cents, created.payment_url, created.expires_at)
    sent: Message
    if created.provider in (CARD, STARS):
        if not await _send_telegram_invoice(update, context, created):
            await payments.cancel(user.id, created.payment_id)
            await show(update, context, screens.provider_unavailable(tr))
            return TopUpState.AWAITING_METHOD
        screen = screens.telegram_invoice_sent(
            tr, invoice, _METHODS[created.provider], back_to_order=from_order
        )
        sent = await show(update, context, screen)
    else:
        screen = screens.crypto_invoice(tr, invoice, back_to_order=from_order)
        sent = await show(update, context, screen, edit=True)
    # Paid, expired or cancelled, this message loses its buttons (services/payments.py).
    await payments.remember_message(user.id, created.payment_id, sent.chat_id, sent.message_id)
    return SessionConversationHandler.END


async def _send_telegram_invoice(
    update: Update, context: BotContext, created: CreatedTopUp
) -> bool:
    """``sendInvoice``: a card one with the provider token and the amount in minor units,
    or a Stars one; False when Telegram refused or did not answer (the payment is then
    cancelled: an invoice that did arrive is refused at pre-checkout, so nothing is
    charged)."""
    chat = update.effective_chat
    assert chat is not None
    tr = context.tr
    if created.provider == STARS:
        title, description = screens.stars_invoice_texts(tr, created.amount_cents)
        await context.bot.send_invoice(
            chat_id=chat.id,
            title=title,
            description=description,
            payload=created.payload,
            currency="XTR",
            prices=[LabeledPrice(title, created.stars)],
        )
        return True
    token = context.settings.secrets.telegram_payment_provider_token
    assert token is not None
    title, description = screens.card_invoice_texts(tr, created.amount_cents)
    try:
        await context.bot.send_invoice(
            chat_id=chat.id,
            title=title,
            description=description,
            payload=created.payload,
            provider_token=token.get_secret_value(),
            currency=created.currency,
            prices=[LabeledPrice(title, created.minor_amount)],
        )
    except TelegramError as exc:
        _LOGGER.warning("card invoice not sent: %s", type(exc).__name__)
        return False
    return True


async def amount_expected(update: Update, context: BotContext) -> TopUpState:
    await show(update, context, screens.amount_expected(context.tr))
    return TopUpState.AWAITING_AMOUNT


def build_topup_conversation() -> SessionConversationHandler:
    return SessionConversationHandler(
        name=NAME,
        entry_points=[
            CommandHandler("topup", ask_amount),
            CallbackQueryHandler(ask_amount, pattern=MenuTopUp.pattern()),
            CallbackQueryHandler(ask_amount, pattern=OrderTopUp.pattern()),
            CallbackQueryHandler(accept_terms, pattern=TopUpTerms.pattern()),
        ],
        states={
            TopUpState.AWAITING_TERMS: [
                CallbackQueryHandler(accept_terms, pattern=TopUpTerms.pattern()),
            ],
            TopUpState.AWAITING_AMOUNT: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, store_amount),
                CallbackQueryHandler(choose_amount, pattern=TopUpAmount.pattern()),
                MessageHandler(~filters.COMMAND & ~filters.StatusUpdate.ALL, amount_expected),
            ],
            TopUpState.AWAITING_METHOD: [
                CallbackQueryHandler(create_invoice, pattern=TopUpMethod.pattern()),
                MessageHandler(filters.TEXT & ~filters.COMMAND, store_amount),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
