"""Refunds for customers: the Refunds menu, My refunds, and the Refund button on a label."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.i18n import Html
from bot.keyboards import inline
from bot.notices import refund_reason
from handlers.common import ack, lang_of, reply
from services.refunds import RefundWindow, Verdict
from storage.client import Document


def window_text(context: BotContext, lang: str, window: RefundWindow) -> str:
    """The last day on which the label can be refunded (and the first, if still ahead)."""
    i18n = context.i18n
    last_day = i18n.date(lang, window.last_day)
    if window.not_yet_open(context.services.refunds.now()):
        first_day = i18n.date(lang, window.first_day)
        return i18n.t(lang, "refund.window_from", first_day=first_day, last_day=last_day)
    return i18n.t(lang, "refund.window_until", last_day=last_day)


def verdict_text(context: BotContext, lang: str, verdicts: list[Verdict]) -> str:
    i18n = context.i18n
    config = context.services.refunds.config
    lines = [
        i18n.t(
            lang,
            f"refund.verdict.{v.verdict}",
            number=v.number,
            amount=i18n.money(lang, v.amount_cents),
            min_days=config.min_age.days,
            max_days=config.max_age.days,
        )
        for v in verdicts
    ]
    accepted = sum(1 for v in verdicts if v.verdict == "accepted")
    return i18n.t(lang, "refund.verdicts", lines=Html("\n".join(lines)), accepted=accepted)


def status_text(context: BotContext, lang: str, refund: Document) -> str:
    status = refund["status"]
    if status == "rejected":
        reason = refund_reason(context.i18n, lang, refund)
        return context.i18n.t(lang, "refund.status.rejected", reason=reason)
    return context.i18n.t(lang, f"refund.status.{status}")


async def refunds_menu(update: Update, context: BotContext) -> None:
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    config = context.services.refunds.config
    text = i18n.t(lang, "refund.menu", min_days=config.min_age.days, max_days=config.max_age.days)
    markup = inline(
        [
            [(i18n.t(lang, "refund.request_button"), "rf:request")],
            [(i18n.t(lang, "refund.my_button"), "rf:list")],
            [(i18n.t(lang, "common.menu"), "menu:main")],
        ]
    )
    await reply(update, context, text, markup)


async def my_refunds(update: Update, context: BotContext) -> None:
    user = update.effective_user
    assert user is not None
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    refunds = await context.services.refunds.for_user(user.id)
    markup = my_refunds_markup(context, lang)
    if not refunds:
        await reply(update, context, i18n.t(lang, "refund.list_empty"), markup)
        return
    lines = [i18n.t(lang, "refund.list_title")]
    for refund in refunds:
        lines.append(
            i18n.t(
                lang,
                "refund.row",
                number=str(refund.get("tracking_number")),
                status=status_text(context, lang, refund),
                amount=i18n.money(lang, int(refund["amount_cents"])),
            )
        )
    await reply(update, context, "\n".join(lines), markup)


def my_refunds_markup(context: BotContext, lang: str) -> Any:
    """My refunds leads on: a new request, My labels, the menu."""
    i18n = context.i18n
    return inline(
        [
            [(i18n.t(lang, "refund.request_button"), "rf:request")],
            [(i18n.t(lang, "menu.labels"), "menu:labels")],
            [(i18n.t(lang, "common.menu"), "menu:main")],
        ]
    )


async def refund_one(update: Update, context: BotContext) -> None:
    """The Refund button on a label in My labels."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    await ack(update)
    lang = lang_of(update, context)
    verdict = await context.services.refunds.request_for_order(
        user.id, query.data.rsplit(":", 1)[-1]
    )
    await reply(update, context, verdict_text(context, lang, [verdict]))


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CallbackQueryHandler(refunds_menu, pattern=r"^menu:refunds$"),
        CommandHandler("myrefunds", my_refunds),
        CallbackQueryHandler(my_refunds, pattern=r"^rf:list$"),
        CallbackQueryHandler(refund_one, pattern=r"^rf:one:[0-9a-f]{24}$"),
    ]
