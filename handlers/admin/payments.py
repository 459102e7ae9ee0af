"""Admin payment tools: credit a payment under review, pending list, Stars refunds."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.keyboards import inline
from bot.settings import Settings
from handlers.admin.access import ALL_ROLES, MANAGERS, admin_filter, requires
from handlers.common import ack, lang_of, reply


@requires(MANAGERS)
async def credit_reviewed(update: Update, context: BotContext) -> None:
    """Credits the amount a suspicious payment received (audited, exactly once)."""
    query = update.callback_query
    admin = update.effective_user
    assert query is not None and query.data is not None and admin is not None
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    payment_id = query.data.rsplit(":", 1)[-1]
    outcome, payment = await context.services.payments.credit_reviewed(payment_id)
    if payment is None or outcome not in ("credited", "already_credited"):
        status = payment["status"] if payment else "unknown"
        await reply(update, context, i18n.t(lang, "admin.payment.not_creditable", status=status))
        return
    if outcome == "credited":
        await context.services.audit.record(
            admin.id,
            "payment.credit_reviewed",
            f"payment:{payment_id}",
            before={"status": "suspicious"},
            after={"status": payment["status"], "credited_cents": payment.get("credited_cents")},
        )
    text = i18n.t(
        lang,
        "admin.payment.credited",
        amount=i18n.money(lang, int(payment.get("credited_cents") or 0)),
        user_id=payment["user_id"],
        payment_id=payment_id,
    )
    await reply(update, context, text, edit=True)


@requires(ALL_ROLES)
async def list_pending(update: Update, context: BotContext) -> None:
    """/payments [pending]: open and suspicious payments with their age."""
    lang = lang_of(update, context)
    i18n = context.i18n
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


@requires(MANAGERS)
async def refund_stars(update: Update, context: BotContext) -> None:
    """/refundstars <payment id>: refunds a Stars payment while the balance covers it."""
    admin = update.effective_user
    assert admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    if not context.args or len(context.args) != 1:
        await reply(update, context, i18n.t(lang, "admin.refund_stars.usage"))
        return
    payment_id = context.args[0]

    async def telegram_refund(user_id: int, charge_id: str) -> None:
        await context.bot.refund_star_payment(user_id, charge_id)

    result, payment = await context.services.payments.refund_stars(payment_id, telegram_refund)
    if result != "refunded" or payment is None:
        await reply(update, context, i18n.t(lang, "admin.refund_stars.failed", reason=result))
        return
    await context.services.audit.record(
        admin.id,
        "payment.refund_stars",
        f"payment:{payment_id}",
        before={"status": "paid"},
        after={"status": "refunded"},
    )
    text = i18n.t(
        lang,
        "admin.refund_stars.done",
        payment_id=payment_id,
        amount=i18n.money(lang, int(payment["credited_cents"])),
        user_id=payment["user_id"],
    )
    await reply(update, context, text)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("payments", list_pending, filters=admin_filter(settings, ALL_ROLES)),
        CommandHandler("refundstars", refund_stars, filters=admin_filter(settings, MANAGERS)),
        CallbackQueryHandler(credit_reviewed, pattern=r"^adm:paycredit:[0-9a-f]{24}$"),
        CallbackQueryHandler(recheck, pattern=r"^adm:recheck:[0-9a-f]{24}$"),
    ]
