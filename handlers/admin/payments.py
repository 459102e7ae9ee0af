"""Admin payment tools: credit a payment under review, pending list, card payments and
recorded card refunds, Stars refunds.

A payment under review whose received amount is known is credited with one tap. When it
is unknown there is no one-tap credit: the admin types the amount (a small conversation,
at most the invoice amount), then confirms it with a button whose id is an
``admin_confirmations`` document; the credit is keyed by the payment, so it happens once.
"""

from __future__ import annotations

from enum import StrEnum

from telegram import InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, RetryAfter
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.context import BotContext
from bot.keyboards import inline
from bot.sessions import SessionConversationHandler
from bot.settings import Settings
from conversations.common import cancel_handlers, conversation_key, leave_others
from handlers.admin.access import ALL_ROLES, MANAGERS, admin_filter, requires, role_of
from handlers.common import ack, lang_of, reply
from services.amounts import AmountError, AmountLimits, parse_amount
from services.payments import (
    CardRefund,
    Outcome,
    ReviewedCredit,
    StarsRefund,
    StarsRefundRefused,
    TopUpError,
)
from storage.client import Document

NAME = "admin_payment"
_OID = r"[0-9a-f]{24}"


class AdminPaymentState(StrEnum):
    AWAITING_RECEIVED = "awaiting_received"


def _credited_text(context: BotContext, lang: str, payment: Document) -> str:
    i18n = context.i18n
    return i18n.t(
        lang,
        "admin.payment.credited",
        amount=i18n.money(lang, int(payment.get("credited_cents") or 0)),
        user_id=payment["user_id"],
        payment_id=str(payment["_id"]),
    )


def _enter_amount_markup(
    context: BotContext, lang: str, payment_id: str
) -> InlineKeyboardMarkup:
    label = context.i18n.t(lang, "admin.paycredit.enter_button")
    return inline([[(label, f"adm:payamt:{payment_id}")]])


@requires(MANAGERS)
async def credit_reviewed(update: Update, context: BotContext) -> None:
    """Credits the amount a suspicious payment received (audited, exactly once); when
    that amount is unknown, credits nothing and asks for it."""
    query = update.callback_query
    admin = update.effective_user
    assert query is not None and query.data is not None and admin is not None
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    payment_id = query.data.rsplit(":", 1)[-1]
    outcome, payment = await context.services.payments.credit_reviewed(admin.id, payment_id)
    if outcome == Outcome.NEEDS_AMOUNT and payment is not None:
        text = i18n.t(lang, "admin.paycredit.needs_amount", payment_id=payment_id)
        await reply(update, context, text, _enter_amount_markup(context, lang, payment_id))
        return
    if payment is None or outcome not in (Outcome.CREDITED, Outcome.ALREADY_CREDITED):
        status = payment["status"] if payment else "unknown"
        await reply(update, context, i18n.t(lang, "admin.payment.not_creditable", status=status))
        return
    await reply(update, context, _credited_text(context, lang, payment), edit=True)


async def _allowed(update: Update, context: BotContext) -> bool:
    """Re-checks the role at every step; a demoted admin's input ends the conversation."""
    if role_of(update, context) in MANAGERS:
        return True
    await ack(update)
    return False


async def ask_received(update: Update, context: BotContext) -> AdminPaymentState | int | None:
    """Remembers the payment under review and asks what it received."""
    if not await _allowed(update, context):
        return None
    query = update.callback_query
    assert query is not None and query.data is not None
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    payment_id = query.data.rsplit(":", 1)[-1]
    payment = await context.services.payments.get(payment_id)
    if payment is None or payment["status"] != "suspicious":
        status = payment["status"] if payment else "unknown"
        await reply(update, context, i18n.t(lang, "admin.payment.not_creditable", status=status))
        return SessionConversationHandler.END
    key = conversation_key(update)
    leave_others(context, key, keep={NAME})
    await context.services.sessions.set_data(key, NAME, {"payment_id": payment_id})
    text = i18n.t(
        lang,
        "admin.paycredit.ask",
        payment_id=payment_id,
        user_id=payment["user_id"],
        amount=i18n.money(lang, int(payment["amount_cents"])),
    )
    cancel = inline([[(i18n.t(lang, "admin.cancel"), f"{NAME}:cancel")]])
    await reply(update, context, text, cancel)
    return AdminPaymentState.AWAITING_RECEIVED


def _input_error(context: BotContext, lang: str, exc: AmountError, limit: int) -> str:
    i18n = context.i18n
    if exc.code == "too_large":
        return i18n.t(lang, "admin.paycredit.too_large", amount=i18n.money(lang, limit))
    if exc.code in ("too_many_decimals", "use_dot", "too_small"):
        return i18n.t(lang, f"admin.input.amount.{exc.code}")
    return i18n.t(lang, "admin.paycredit.not_a_number")


async def receive_received(update: Update, context: BotContext) -> AdminPaymentState | int:
    """Validates the typed amount and shows the confirmation button; nothing moves yet."""
    if not await _allowed(update, context):
        return SessionConversationHandler.END
    message = update.effective_message
    admin = update.effective_user
    assert message is not None and message.text is not None and admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    data = await context.services.sessions.get_data(conversation_key(update), NAME)
    payment_id = str(data.get("payment_id") or "")
    payments = context.services.payments
    payment = await payments.get(payment_id)
    if payment is None or payment["status"] != "suspicious":
        status = payment["status"] if payment else "unknown"
        await reply(update, context, i18n.t(lang, "admin.payment.not_creditable", status=status))
        return SessionConversationHandler.END
    limit = int(payment["amount_cents"])
    try:
        cents = parse_amount(message.text, lang, AmountLimits(1, limit))
    except AmountError as exc:
        await reply(update, context, _input_error(context, lang, exc, limit))
        return AdminPaymentState.AWAITING_RECEIVED
    try:
        confirmation = await payments.prepare_reviewed_credit(admin.id, payment_id, cents)
    except TopUpError as exc:
        if exc.code == "above_invoice":
            await reply(update, context, i18n.t(
                lang, "admin.paycredit.too_large", amount=i18n.money(lang, limit)
            ))
            return AdminPaymentState.AWAITING_RECEIVED
        await reply(update, context, i18n.t(lang, "admin.payment.not_creditable", status="-"))
        return SessionConversationHandler.END
    cid = str(confirmation["_id"])
    text = i18n.t(
        lang,
        "admin.paycredit.confirm",
        amount=i18n.money(lang, cents),
        invoice=i18n.money(lang, limit),
        user_id=payment["user_id"],
        payment_id=payment_id,
    )
    rows = [
        [(i18n.t(lang, "admin.confirm"), f"adm:payok:{cid}")],
        [(i18n.t(lang, "admin.cancel"), f"adm:payno:{cid}")],
    ]
    await reply(update, context, text, inline(rows))
    return SessionConversationHandler.END


async def text_expected(update: Update, context: BotContext) -> None:
    await reply(update, context, context.i18n.t(lang_of(update, context), "admin.input.text_only"))


@requires(MANAGERS)
async def decide_typed_credit(update: Update, context: BotContext) -> None:
    """The confirmation button: credits the typed amount once, however often pressed."""
    query = update.callback_query
    admin = update.effective_user
    assert query is not None and query.data is not None and admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    _, action, cid = query.data.split(":")
    payments = context.services.payments
    if action == "payno":
        await ack(update)
        if await payments.cancel_reviewed_credit(admin.id, cid):
            await reply(update, context, i18n.t(lang, "admin.cancelled"), edit=True)
        return
    status, _, payment = await payments.confirm_reviewed_credit(admin.id, cid)
    if status in (ReviewedCredit.CREDITED, ReviewedCredit.ALREADY_CREDITED) and payment:
        await ack(update)
        await reply(update, context, _credited_text(context, lang, payment), edit=True)
        return
    if status == ReviewedCredit.NOT_CREDITABLE:
        await ack(update)
        state = payment["status"] if payment else "unknown"
        await reply(
            update, context, i18n.t(lang, "admin.payment.not_creditable", status=state), edit=True
        )
        return
    await ack(update, i18n.t(lang, f"admin.confirmation.{status}"), alert=True)


async def _list_card(update: Update, context: BotContext, lang: str) -> None:
    """The latest card payments with the provider's charge id (what to look up there)."""
    i18n = context.i18n
    payments = await context.services.payments.recent_card(limit=20)
    if not payments:
        await reply(update, context, i18n.t(lang, "admin.payments.card_none"))
        return
    lines = [i18n.t(lang, "admin.payments.card_title")]
    for payment in payments:
        lines.append(
            i18n.t(
                lang,
                "admin.payments.card_row",
                status=payment["status"],
                user_id=payment["user_id"],
                amount=i18n.money(lang, int(payment["amount_cents"])),
                charge_id=str(payment.get("provider_ref") or "-"),
                payment_id=str(payment["_id"]),
            )
        )
    await reply(update, context, "\n".join(lines))


@requires(ALL_ROLES)
async def list_pending(update: Update, context: BotContext) -> None:
    """/payments [pending|card]: open and suspicious payments with their age; ``card``: the
    latest card payments."""
    lang = lang_of(update, context)
    i18n = context.i18n
    if context.args and context.args[0].lower() == "card":
        await _list_card(update, context, lang)
        return
    now = context.bot_data.clock()
    payments = await context.services.payments.list_open(limit=30)
    if not payments:
        await reply(update, context, i18n.t(lang, "admin.payments.none"))
        return
    lines = []
    buttons = []
    for payment in payments:
        created = payment["created_at"]
        lines.append(
            i18n.t(
                lang,
                "admin.payments.row",
                status=payment["status"],
                age=int((now - created).total_seconds() // 60),
                user_id=payment["user_id"],
                provider=payment["provider"],
                amount=i18n.money(lang, payment["amount_cents"]),
                payment_id=str(payment["_id"]),
            )
        )
        if payment["provider"] == "oxapay" and payment["status"] != "suspicious":
            pid = str(payment["_id"])
            buttons.append([(i18n.t(lang, "admin.payments.recheck", payment_id=pid[-6:]),
                             f"adm:recheck:{pid}")])
    await reply(update, context, "\n".join(lines), inline(buttons[:20]) if buttons else None)


@requires(MANAGERS)
async def recheck(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    await ack(update)
    lang = lang_of(update, context)
    outcome = await context.services.payments.recheck(query.data.rsplit(":", 1)[-1])
    await reply(update, context, context.i18n.t(lang, "admin.payments.rechecked", outcome=outcome))


async def _refund_through_telegram(context: BotContext, user_id: int, charge_id: str) -> None:
    """``refundStarPayment``, its answer translated for the service: returns when refunded
    (or already refunded: an earlier attempt whose answer was lost did it), raises
    ``StarsRefundRefused`` when Telegram answered no; any other error is an unknown outcome
    (a timeout or a 5xx may come after the refund was made)."""
    try:
        await context.bot.refund_star_payment(user_id, charge_id)
    except BadRequest as exc:
        if "CHARGE_ALREADY_REFUNDED" in exc.message.upper():
            return
        raise StarsRefundRefused(exc.message) from exc
    except (Forbidden, RetryAfter) as exc:
        # Answered before anything was done: blocked, or flood control.
        raise StarsRefundRefused(type(exc).__name__) from exc


@requires(MANAGERS)
async def refund_stars(update: Update, context: BotContext) -> None:
    """/refundstars <payment id>: refunds a Stars payment while the balance covers it; run
    again on a refund whose outcome is unknown, it retries that refund (no second debit)."""
    admin = update.effective_user
    assert admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    if not context.args or len(context.args) != 1:
        await reply(update, context, i18n.t(lang, "admin.refund_stars.usage"))
        return
    payment_id = context.args[0]

    async def telegram_refund(user_id: int, charge_id: str) -> None:
        await _refund_through_telegram(context, user_id, charge_id)

    outcome = await context.services.payments.refund_stars(
        admin.id, payment_id, telegram_refund
    )
    result, payment = outcome.status, outcome.payment
    if result == StarsRefund.UNKNOWN and payment is not None:
        minutes = context.services.payments.config.stars_refund_alert_after.total_seconds()
        text = i18n.t(
            lang,
            "admin.refund_stars.unknown",
            payment_id=payment_id,
            amount=i18n.money(lang, int(payment["credited_cents"])),
            minutes=int(minutes // 60),
        )
        await reply(update, context, text)
        return
    if result == StarsRefund.REFUSED:
        text = i18n.t(
            lang, "admin.refund_stars.refused", payment_id=payment_id, reason=outcome.reason
        )
        await reply(update, context, text)
        return
    if result != StarsRefund.REFUNDED or payment is None:
        await reply(update, context, i18n.t(lang, "admin.refund_stars.failed", reason=result))
        return
    text = i18n.t(
        lang,
        "admin.refund_stars.done",
        payment_id=payment_id,
        amount=i18n.money(lang, int(payment["credited_cents"])),
        user_id=payment["user_id"],
    )
    await reply(update, context, text)


@requires(MANAGERS)
async def refund_card(update: Update, context: BotContext) -> None:
    """/refundcard <payment id>: records a card refund (the credit debited once, audited)
    and tells the admin to refund the charge at the provider; Telegram cannot."""
    admin = update.effective_user
    assert admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    if not context.args or len(context.args) != 1:
        await reply(update, context, i18n.t(lang, "admin.refund_card.usage"))
        return
    payment_id = context.args[0]
    result, payment = await context.services.payments.record_card_refund(admin.id, payment_id)
    if result not in (CardRefund.RECORDED, CardRefund.ALREADY_REFUNDED) or payment is None:
        await reply(update, context, i18n.t(lang, "admin.refund_card.failed", reason=result))
        return
    text = i18n.t(
        lang,
        "admin.refund_card.done" if result == CardRefund.RECORDED else "admin.refund_card.already",
        payment_id=payment_id,
        amount=i18n.money(lang, int(payment.get("credited_cents") or 0)),
        user_id=payment["user_id"],
        charge_id=str(payment.get("provider_ref") or "-"),
    )
    await reply(update, context, text)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    text = filters.TEXT & ~filters.COMMAND
    not_text = ~filters.TEXT & ~filters.COMMAND & ~filters.StatusUpdate.ALL
    conversation = SessionConversationHandler(
        name=NAME,
        entry_points=[CallbackQueryHandler(ask_received, pattern=rf"^adm:payamt:{_OID}$")],
        states={
            AdminPaymentState.AWAITING_RECEIVED: [
                MessageHandler(text, receive_received),
                MessageHandler(not_text, text_expected),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
    return [
        conversation,
        CommandHandler("payments", list_pending, filters=admin_filter(settings, ALL_ROLES)),
        CommandHandler("refundstars", refund_stars, filters=admin_filter(settings, MANAGERS)),
        CommandHandler("refundcard", refund_card, filters=admin_filter(settings, MANAGERS)),
        CallbackQueryHandler(credit_reviewed, pattern=rf"^adm:paycredit:{_OID}$"),
        CallbackQueryHandler(decide_typed_credit, pattern=rf"^adm:pay(ok|no):{_OID}$"),
        CallbackQueryHandler(recheck, pattern=rf"^adm:recheck:{_OID}$"),
    ]
