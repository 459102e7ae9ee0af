"""Admin refund review: list, approve (asks the carrier for the void; credits when it is
voided), reject with a reason, and credit without void (confirmed, once); all audited."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.keyboards import inline
from bot.notices import void_refusal_text
from bot.settings import Settings
from handlers.admin.access import ALL_ROLES, MANAGERS, admin_filter, requires
from handlers.common import ack, lang_of, reply
from services.refunds import AdminOutcome

_ID = r"[0-9a-f]{24}"


@requires(ALL_ROLES)
async def list_review(update: Update, context: BotContext) -> None:
    """/refunds_review: requests waiting for the carrier or for an admin."""
    lang = lang_of(update, context)
    i18n = context.i18n
    refunds = await context.services.refunds.list_for_review()
    if not refunds:
        await reply(update, context, i18n.t(lang, "admin.refunds.none"))
        return
    lines = [
        i18n.t(
            lang,
            "admin.refunds.row",
            refund_id=str(r["_id"]),
            user_id=r["user_id"],
            number=str(r.get("tracking_number")),
            amount=i18n.money(lang, int(r["amount_cents"])),
            status=r["status"],
        )
        for r in refunds
    ]
    lines.append(i18n.t(lang, "admin.refunds.commands"))
    await reply(update, context, "\n".join(lines))


async def _answer(
    update: Update, context: BotContext, refund_id: str, outcome: AdminOutcome, *, edit: bool
) -> None:
    """Tells the admin what happened, with the carrier's reason when it refused."""
    lang = lang_of(update, context)
    i18n = context.i18n
    refund = outcome.refund
    markup = None
    if outcome.status in ("credited", "void_refused", "carrier_unavailable", "rejected") and (
        refund is not None
    ):
        fields = {
            "refund_id": refund_id,
            "user_id": refund["user_id"],
            "number": str(refund.get("tracking_number")),
            "amount": i18n.money(lang, int(refund["amount_cents"])),
        }
        if outcome.status == "void_refused":
            fields["reason"] = void_refusal_text(i18n, lang, refund)
            markup = inline(
                [
                    [(i18n.t(lang, "admin.refunds.reject"), f"adm:rfno:{refund_id}")],
                    [(i18n.t(lang, "admin.refunds.credit_button"), f"adm:rfcr:{refund_id}")],
                ]
            )
        text = i18n.t(lang, f"admin.refunds.outcome.{outcome.status}", **fields)
    else:
        result = outcome.status
        if result == "not_allowed" and refund is not None:
            result = f"not_allowed:{refund['status']}"
        text = i18n.t(lang, "admin.refunds.done", refund_id=refund_id, result=result)
    await reply(update, context, text, markup, edit=edit)


async def _approve(update: Update, context: BotContext, refund_id: str, *, edit: bool) -> None:
    admin = update.effective_user
    assert admin is not None
    outcome = await context.services.refunds.approve(admin.id, refund_id)
    await _answer(update, context, refund_id, outcome, edit=edit)


async def _reject(
    update: Update, context: BotContext, refund_id: str, reason: str, *, edit: bool
) -> None:
    admin = update.effective_user
    assert admin is not None
    outcome = await context.services.refunds.reject(admin.id, refund_id, reason)
    await _answer(update, context, refund_id, outcome, edit=edit)


async def _ask_credit(update: Update, context: BotContext, refund_id: str) -> None:
    """Shows what crediting without the void means, behind a confirmation button."""
    admin = update.effective_user
    assert admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    outcome = await context.services.refunds.prepare_credit_without_void(admin.id, refund_id)
    refund, confirmation = outcome.refund, outcome.confirmation
    if outcome.status != "confirm" or refund is None or confirmation is None:
        await _answer(update, context, refund_id, outcome, edit=False)
        return
    cid = str(confirmation["_id"])
    text = i18n.t(
        lang,
        "admin.refunds.credit_confirm",
        refund_id=refund_id,
        user_id=refund["user_id"],
        number=str(refund.get("tracking_number")),
        amount=i18n.money(lang, int(refund["amount_cents"])),
    )
    rows = [
        [(i18n.t(lang, "admin.refunds.credit_confirm_button"), f"adm:rfcw:ok:{cid}")],
        [(i18n.t(lang, "admin.cancel"), f"adm:rfcw:no:{cid}")],
    ]
    await reply(update, context, text, inline(rows))


@requires(MANAGERS)
async def approve_command(update: Update, context: BotContext) -> None:
    if not context.args or len(context.args) != 1:
        text = context.i18n.t(lang_of(update, context), "admin.refunds.usage_approve")
        await reply(update, context, text)
        return
    await _approve(update, context, context.args[0], edit=False)


@requires(MANAGERS)
async def reject_command(update: Update, context: BotContext) -> None:
    if not context.args or len(context.args) < 2:
        text = context.i18n.t(lang_of(update, context), "admin.refunds.usage_reject")
        await reply(update, context, text)
        return
    await _reject(update, context, context.args[0], " ".join(context.args[1:]), edit=False)


@requires(MANAGERS)
async def credit_command(update: Update, context: BotContext) -> None:
    """/refund_credit <refund id>: credit without void, after a confirmation."""
    if not context.args or len(context.args) != 1:
        text = context.i18n.t(lang_of(update, context), "admin.refunds.usage_credit")
        await reply(update, context, text)
        return
    await _ask_credit(update, context, context.args[0])


@requires(MANAGERS)
async def decide_button(update: Update, context: BotContext) -> None:
    """Approve / Reject / Credit without void on a review alert or an approval answer."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await ack(update)
    _, action, refund_id = query.data.split(":")
    if action == "rfok":
        await _approve(update, context, refund_id, edit=False)
    elif action == "rfno":
        await _reject(update, context, refund_id, "rejected by an administrator", edit=False)
    else:
        await _ask_credit(update, context, refund_id)


@requires(MANAGERS)
async def confirm_credit(update: Update, context: BotContext) -> None:
    """The confirmation button: credits without void once, however often it is pressed."""
    query = update.callback_query
    admin = update.effective_user
    assert query is not None and query.data is not None and admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    _, _, action, cid = query.data.split(":")
    refunds = context.services.refunds
    if action == "no":
        await ack(update)
        if await refunds.cancel_credit_without_void(admin.id, cid):
            await reply(update, context, i18n.t(lang, "admin.cancelled"), edit=True)
        return
    outcome = await refunds.credit_without_void(admin.id, cid)
    refund = outcome.refund
    if outcome.status == "credited_without_void" and refund is not None:
        await ack(update)
        text = i18n.t(
            lang,
            "admin.refunds.outcome.credited_without_void",
            refund_id=str(refund["_id"]),
            user_id=refund["user_id"],
            number=str(refund.get("tracking_number")),
            amount=i18n.money(lang, int(refund["amount_cents"])),
        )
        await reply(update, context, text, edit=True)
        return
    if outcome.status == "not_allowed" and refund is not None:
        await ack(update)
        text = i18n.t(
            lang,
            "admin.refunds.done",
            refund_id=str(refund["_id"]),
            result=f"not_allowed:{refund['status']}",
        )
        await reply(update, context, text, edit=True)
        return
    status = outcome.status if outcome.status != "not_found" else "unknown"
    await ack(update, i18n.t(lang, f"admin.confirmation.{status}"), alert=True)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("refunds_review", list_review, filters=admin_filter(settings, ALL_ROLES)),
        CommandHandler(
            "refund_approve", approve_command, filters=admin_filter(settings, MANAGERS)
        ),
        CommandHandler("refund_reject", reject_command, filters=admin_filter(settings, MANAGERS)),
        CommandHandler("refund_credit", credit_command, filters=admin_filter(settings, MANAGERS)),
        CallbackQueryHandler(decide_button, pattern=rf"^adm:rf(ok|no|cr):{_ID}$"),
        CallbackQueryHandler(confirm_credit, pattern=rf"^adm:rfcw:(ok|no):{_ID}$"),
    ]
