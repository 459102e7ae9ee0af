"""Admin refund review: list, approve (credits once), reject with a reason; all audited."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.settings import Settings
from handlers.admin.access import ALL_ROLES, MANAGERS, admin_filter, requires
from handlers.common import ack, lang_of, reply


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
    await reply(update, context, "\n".join(lines))


async def _decide(
    update: Update, context: BotContext, refund_id: str, approve: bool, reason: str
) -> None:
    admin = update.effective_user
    assert admin is not None
    refunds = context.services.refunds
    before = await refunds.get(refund_id)
    if approve:
        result, after = await refunds.approve(refund_id)
    else:
        result, after = await refunds.reject(refund_id, reason)
    if result in ("credited", "rejected") and after is not None:
        await context.services.audit.record(
            admin.id,
            "refund.approve" if approve else "refund.reject",
            f"refund:{refund_id}",
            before={"status": before["status"] if before else None},
            after={"status": after["status"], "reason": after.get("reason")},
        )
    lang = lang_of(update, context)
    await reply(
        update,
        context,
        context.i18n.t(lang, "admin.refunds.done", refund_id=refund_id, result=result),
    )


@requires(MANAGERS)
async def approve_command(update: Update, context: BotContext) -> None:
    if not context.args or len(context.args) != 1:
        text = context.i18n.t(lang_of(update, context), "admin.refunds.usage_approve")
        await reply(update, context, text)
        return
    await _decide(update, context, context.args[0], True, "")


@requires(MANAGERS)
async def reject_command(update: Update, context: BotContext) -> None:
    if not context.args or len(context.args) < 2:
        text = context.i18n.t(lang_of(update, context), "admin.refunds.usage_reject")
        await reply(update, context, text)
        return
    await _decide(update, context, context.args[0], False, " ".join(context.args[1:]))


@requires(MANAGERS)
async def decide_button(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    await ack(update)
    _, action, refund_id = query.data.split(":")
    await _decide(update, context, refund_id, action == "rfok", "rejected by an administrator")


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("refunds_review", list_review, filters=admin_filter(settings, ALL_ROLES)),
        CommandHandler(
            "refund_approve", approve_command, filters=admin_filter(settings, MANAGERS)
        ),
        CommandHandler("refund_reject", reject_command, filters=admin_filter(settings, MANAGERS)),
        CallbackQueryHandler(decide_button, pattern=r"^adm:rf(ok|no):[0-9a-f]{24}$"),
    ]
