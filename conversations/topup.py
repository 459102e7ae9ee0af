"""Top-up: amount → method → invoice (a card invoice through Telegram Payments, an OxaPay
link, or a Stars invoice). Only the rails the operator enabled are offered; with none,
top-up says payments are unavailable and points to support.

State diagram: ``topup.mmd``. The invoice message carries its own Cancel button, handled
statelessly (``handlers/payments.py``), so the conversation ends once the invoice exists.
Started from the order summary (``order:topup``), the final message offers the way back.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.keyboards import Button, cancel_button, inline
from bot.sessions import SessionConversationHandler
from conversations.common import cancel_handlers, conversation_key, leave_others
from handlers.balance import format_when
from handlers.common import ack, lang_of, reply
from services.amounts import AmountError, AmountLimits, parse_amount
from services.payments import CARD, OXAPAY, STARS, CreatedTopUp, TopUpError, stars_for

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
    from_order = bool(update.callback_query and update.callback_query.data == "order:topup")
    leave_others(context, key, keep={NAME, "order"} if from_order else {NAME})
    if not context.services.payments.config.rails:
        lang = lang_of(update, context)
        text = context.i18n.t(lang, "topup.unavailable", support=context.settings.support_contact)
        await reply(update, context, text)
        return SessionConversationHandler.END
    accepted = await context.services.privacy.accepted_terms(user.id)
    if accepted != context.legal.terms_version:
        await context.services.sessions.set_data(key, NAME, {"from_order": from_order})
        await _ask_terms(update, context, again=accepted is not None)
        return TopUpState.AWAITING_TERMS
    return await _ask_amount(update, context, from_order=from_order)


async def _ask_terms(update: Update, context: BotContext, *, again: bool) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    version = context.legal.terms_version
    text = i18n.t(lang, "legal.accept.ask_again" if again else "legal.accept.ask", version=version)
    rows: list[list[Button]] = [
        [(i18n.t(lang, "legal.accept.button"), f"topup:terms:{version}")],
        [(i18n.t(lang, "legal.accept.read_button"), "legal:show:terms")],
        cancel_button(i18n, lang, "topup:cancel"),
    ]
    await reply(update, context, text, inline(rows))


async def accept_terms(update: Update, context: BotContext) -> TopUpState | int:
    """Records the acceptance of the version on the button, then asks for the amount; a
    button of an older version shows the current terms again."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    await ack(update)
    version = context.legal.terms_version
    if query.data.removeprefix("topup:terms:") != version:
        await _ask_terms(update, context, again=True)
        return TopUpState.AWAITING_TERMS
    await context.services.privacy.accept_terms(user.id, version)
    lang = lang_of(update, context)
    await reply(update, context, context.i18n.t(lang, "legal.accept.done", version=version),
                edit=True)
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    return await _ask_amount(update, context, from_order=bool(data.get("from_order")))


async def _ask_amount(
    update: Update, context: BotContext, *, from_order: bool
) -> TopUpState | int:
    user = update.effective_user
    assert user is not None
    key = conversation_key(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    payments = context.services.payments
    pending = await payments.pending_for_user(user.id)
    if pending is not None:
        amount = i18n.money(lang, pending["amount_cents"])
        text = i18n.t(lang, "topup.pending_exists", amount=amount)
        await reply(update, context, text, _invoice_markup(context, lang, pending))
        return SessionConversationHandler.END
    config = payments.config
    return_to = "order" if from_order else ""
    await context.services.sessions.set_data(key, NAME, {"return_to": return_to})
    text = i18n.t(
        lang,
        "topup.ask_amount",
        min=i18n.money(lang, config.min_cents),
        max=i18n.money(lang, config.max_cents),
    )
    text += "\n\n" + i18n.t(lang, "legal.topup_links")
    await reply(update, context, text, inline([cancel_button(i18n, lang, "topup:cancel")]))
    return TopUpState.AWAITING_AMOUNT


async def store_amount(update: Update, context: BotContext) -> TopUpState:
    """Validates the amount, stores it with the session and asks for the method."""
    message = update.effective_message
    assert message is not None and message.text is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    config = context.services.payments.config
    try:
        cents = parse_amount(
            message.text, lang, AmountLimits(config.min_cents, config.max_cents)
        )
    except AmountError as exc:
        text = i18n.t(lang, f"topup.error.{exc.code}", **_limits(context, lang))
        await reply(update, context, text, inline([cancel_button(i18n, lang, "topup:cancel")]))
        return TopUpState.AWAITING_AMOUNT
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    await context.services.sessions.set_data(key, NAME, {**data, "amount_cents": cents})
    rows: list[list[Button]] = []
    for rail in config.rails:
        method = _METHODS[rail]
        stars = stars_for(cents, config.stars_per_usd) if rail == STARS else 0
        label = i18n.t(lang, f"topup.method.{method}", stars=stars)
        rows.append([(label, f"topup:method:{method}")])
    rows.append(cancel_button(i18n, lang, "topup:cancel"))
    text = i18n.t(lang, "topup.ask_method", amount=i18n.money(lang, cents))
    await reply(update, context, text, inline(rows))
    return TopUpState.AWAITING_METHOD


def _limits(context: BotContext, lang: str) -> dict[str, str]:
    config = context.services.payments.config
    i18n = context.i18n
    return {"min": i18n.money(lang, config.min_cents), "max": i18n.money(lang, config.max_cents)}


async def create_invoice(update: Update, context: BotContext) -> TopUpState | int:
    """Creates the invoice with the chosen method and ends the conversation."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    cents = data.get("amount_cents")
    if not isinstance(cents, int):
        return await ask_amount(update, context)
    payments = context.services.payments
    method = query.data.rsplit(":", 1)[-1]
    if method not in (_METHODS[rail] for rail in payments.config.rails):
        # A button from before the operator turned this rail off.
        await reply(update, context, i18n.t(lang, "topup.method_off"))
        return TopUpState.AWAITING_METHOD
    try:
        if method == "stars":
            created = await payments.create_stars_topup(user.id, cents)
        elif method == "card":
            created = await payments.create_card_topup(user.id, cents)
        else:
            created = await payments.create_oxapay_topup(user.id, cents)
    except TopUpError:
        await reply(update, context, i18n.t(lang, "topup.provider_unavailable"))
        return TopUpState.AWAITING_METHOD
    amount = i18n.money(lang, cents)
    expires = format_when(i18n, lang, created.expires_at) if created.expires_at else "-"
    back = _back_rows(context, lang, data)
    if created.provider == CARD:
        if not await _send_card_invoice(update, context, lang, created):
            await payments.cancel(user.id, created.payment_id)
            await reply(update, context, i18n.t(lang, "topup.provider_unavailable"))
            return TopUpState.AWAITING_METHOD
        text = i18n.t(lang, "topup.card_sent", expires=expires)
        await reply(update, context, text, inline(back) if back else None)
        return SessionConversationHandler.END
    if created.provider == STARS:
        chat = update.effective_chat
        assert chat is not None
        await context.bot.send_invoice(
            chat_id=chat.id,
            title=i18n.t(lang, "topup.stars_title"),
            description=i18n.t(lang, "topup.stars_description", amount=amount),
            payload=created.payload,
            currency="XTR",
            prices=[LabeledPrice(i18n.t(lang, "topup.stars_title"), created.stars)],
        )
        text = i18n.t(lang, "topup.stars_sent", expires=expires)
        await reply(update, context, text, inline(back) if back else None)
        return SessionConversationHandler.END
    text_key = "topup.invoice" if created.payment_url else "topup.invoice_no_link"
    markup = _invoice_markup(
        context,
        lang,
        {"_id": created.payment_id, "amount_cents": cents, "payment_url": created.payment_url},
        extra=back,
    )
    text = i18n.t(lang, text_key, amount=amount, expires=expires)
    await reply(update, context, text, markup, edit=True)
    return SessionConversationHandler.END


async def _send_card_invoice(
    update: Update, context: BotContext, lang: str, created: CreatedTopUp
) -> bool:
    """``sendInvoice`` with the provider token and the amount in minor units; False when
    Telegram refused or did not answer (the payment is then cancelled: an invoice that
    did arrive is refused at pre-checkout, so nothing is charged)."""
    chat = update.effective_chat
    token = context.settings.secrets.telegram_payment_provider_token
    assert chat is not None and token is not None
    i18n = context.i18n
    title = i18n.t(lang, "topup.card_title")
    try:
        await context.bot.send_invoice(
            chat_id=chat.id,
            title=title,
            description=i18n.t(
                lang, "topup.card_description", amount=i18n.money(lang, created.amount_cents)
            ),
            payload=created.payload,
            provider_token=token.get_secret_value(),
            currency=created.currency,
            prices=[LabeledPrice(title, created.minor_amount)],
        )
    except TelegramError as exc:
        _LOGGER.warning("card invoice not sent: %s", type(exc).__name__)
        return False
    return True


def _back_rows(context: BotContext, lang: str, data: dict[str, object]) -> list[list[Button]]:
    if data.get("return_to") == "order":
        return [[(context.i18n.t(lang, "order.back_to_summary"), "order:summary")]]
    return []


def _invoice_markup(
    context: BotContext,
    lang: str,
    payment: dict[str, object],
    extra: list[list[Button]] | None = None,
) -> InlineKeyboardMarkup:
    i18n = context.i18n
    rows: list[list[InlineKeyboardButton]] = []
    url = payment.get("payment_url")
    if isinstance(url, str) and url:
        amount = i18n.money(lang, int(str(payment["amount_cents"])))
        label = i18n.t(lang, "topup.pay_button", amount=amount)
        rows.append([InlineKeyboardButton(label, url=url)])
    cancel_label = i18n.t(lang, "topup.cancel_invoice")
    cancel = inline([[(cancel_label, f"topup:cancelinv:{payment['_id']}")]])
    rows.extend(cancel.inline_keyboard)  # type: ignore[arg-type]
    if extra:
        rows.extend(inline(extra).inline_keyboard)  # type: ignore[arg-type]
    return InlineKeyboardMarkup(rows)


async def amount_expected(update: Update, context: BotContext) -> TopUpState:
    lang = lang_of(update, context)
    await reply(update, context, context.i18n.t(lang, "topup.error.not_a_number"))
    return TopUpState.AWAITING_AMOUNT


_TERMS_BUTTON = r"^topup:terms:[A-Za-z0-9._-]{1,32}$"


def build_topup_conversation() -> SessionConversationHandler:
    return SessionConversationHandler(
        name=NAME,
        entry_points=[
            CommandHandler("topup", ask_amount),
            CallbackQueryHandler(ask_amount, pattern=r"^(menu:topup|order:topup)$"),
            CallbackQueryHandler(accept_terms, pattern=_TERMS_BUTTON),
        ],
        states={
            TopUpState.AWAITING_TERMS: [
                CallbackQueryHandler(accept_terms, pattern=_TERMS_BUTTON),
            ],
            TopUpState.AWAITING_AMOUNT: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, store_amount),
                MessageHandler(~filters.COMMAND & ~filters.StatusUpdate.ALL, amount_expected),
            ],
            TopUpState.AWAITING_METHOD: [
                CallbackQueryHandler(
                    create_invoice, pattern=r"^topup:method:(crypto|card|stars)$"
                ),
                MessageHandler(filters.TEXT & ~filters.COMMAND, store_amount),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
