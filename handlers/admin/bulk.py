"""Bulk jobs in the admin console: ``/bulk_cancel <job id>``, the ``/stats`` and ``/user``
lines. A cancel stops the job after the row being bought; nothing bought is refunded."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import BotContext
from bot.settings import Settings
from handlers.admin.access import MANAGERS, admin_filter
from handlers.common import lang_of, reply
from services.stats import period_start


async def cancel_command(update: Update, context: BotContext) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    user = update.effective_user
    assert user is not None
    args = context.args or []
    if len(args) != 1:
        await reply(update, context, i18n.t(lang, "admin.bulk.usage"))
        return
    job = await context.services.bulk.request_cancel(args[0], by=user.id)
    if job is None:
        await reply(update, context, i18n.t(lang, "admin.bulk.not_running", job=args[0]))
        return
    await reply(update, context, i18n.t(lang, "admin.bulk.cancelling", job=str(job["_id"])))


async def stats_line(context: BotContext, lang: str, period: str) -> str:
    since = period_start(period, context.services.bulk.now())
    counts = await context.services.bulk.counts(since=since)
    return context.i18n.t(
        lang,
        "admin.bulk.stats",
        total=sum(counts.values()),
        running=counts.get("running", 0) + counts.get("delivering", 0),
        done=counts.get("done", 0),
    )


async def user_lines(context: BotContext, lang: str, user_id: int) -> str:
    i18n = context.i18n
    jobs = await context.services.bulk.for_user(user_id, limit=5)
    if not jobs:
        return ""
    rows = [
        i18n.t(
            lang,
            "admin.bulk.user_row",
            job=str(job["_id"]),
            status=str(job.get("status")),
            rows=int(job.get("valid_count") or 0),
            bought=int(job.get("bought_count") or 0),
            total=i18n.money(lang, int(job.get("total_cents") or 0)),
        )
        for job in jobs
    ]
    return i18n.t(lang, "admin.bulk.user_title") + "\n" + "\n".join(rows)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("bulk_cancel", cancel_command, filters=admin_filter(settings, MANAGERS)),
    ]
