"""``/stats [today|7d|30d|all]``: business figures from MongoDB aggregations."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import BotContext
from bot.i18n import Html
from bot.settings import Settings
from handlers.admin import bulk
from handlers.admin.access import ALL_ROLES, admin_filter, requires
from handlers.common import lang_of, reply
from services.stats import DEFAULT_PERIOD, PERIODS


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


@requires(ALL_ROLES)
async def stats_command(update: Update, context: BotContext) -> None:
    period = context.args[0].lower() if context.args else DEFAULT_PERIOD
    if period not in PERIODS:
        await reply(update, context, context.i18n.t(lang_of(update, context), "admin.stats.usage"))
        return
    await render_stats(update, context, period)


async def render_stats(update: Update, context: BotContext, period: str) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    report = await context.services.stats.report(period)
    money = i18n.money
    users, orders, payments, refunds = (
        report.users,
        report.orders,
        report.payments,
        report.refunds,
    )
    topups = [
        i18n.t(
            lang, "admin.stats.topup_row", method=method, count=count, amount=money(lang, cents)
        )
        for method, (count, cents) in report.payments.topups.items()
    ] or [i18n.t(lang, "admin.stats.topup_none")]
    text = i18n.t(
        lang,
        "admin.stats.report",
        period=i18n.t(lang, f"admin.stats.period.{period}"),
        users_total=users.total,
        users_new=users.new,
        active_24h=users.active_24h,
        active_7d=users.active_7d,
        orders=orders.purchased,
        revenue=money(lang, orders.revenue_cents),
        cost=money(lang, orders.carrier_cost_cents),
        margin=money(lang, orders.margin_cents),
        completion=_duration(orders.avg_completion_seconds),
        topups=Html("\n".join(topups)),
        refunds_requested=refunds.requested,
        refunds_credited=refunds.credited,
        refunds_amount=money(lang, refunds.credited_cents),
        paid=payments.paid,
        created=payments.created,
        success=_percent(payments.success_rate),
        callbacks=report.callbacks_total,
        duplicates=report.callbacks_duplicate,
        duplicate_ratio=_percent(report.duplicate_ratio),
    )
    text += "\n" + await bulk.stats_line(context, lang, period)
    await reply(update, context, text)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    return [CommandHandler("stats", stats_command, filters=admin_filter(settings, ALL_ROLES))]
