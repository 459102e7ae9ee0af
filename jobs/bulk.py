"""Buys the rows of confirmed bulk jobs and delivers their labels (leader only).

One run at a time per process (a lock: the scheduled run and a run started elsewhere take
turns). Every row is bought through ``PurchaseService.purchase``, which claims it
conditionally, so a second worker, or a run after a crash, never buys a row twice. The
progress message is edited at most every ``bulk.progress_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from telegram import InputFile
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.context import BotContext
from bot.lease import holds_lease
from bot.telegram_errors import NOT_MODIFIED, TO_EDIT_NOT_FOUND, is_bad_request
from handlers.bulk import quote_message
from providers.errors import ProviderError
from services.bulk import RESULT_COLUMNS, ProgressCallback, csv_bytes, results_rows
from storage.client import Document

_LOGGER = logging.getLogger(__name__)
# Of the delivery files (Python's mimetypes knows no ZPL).
_MIME = {"pdf": "application/pdf", "zpl": "application/zpl", "zip": "application/zip"}
_LOCK = "bulk_lock"


async def bulk_purchase_job(context: BotContext) -> None:
    lock = context.bot_data.extras.setdefault(_LOCK, asyncio.Lock())
    async with lock:
        bulk = context.services.bulk
        await bulk.expire_unpaid()
        for job in await bulk.active():
            if _stopping(context):
                return
            try:
                if job["status"] in ("quoting", "quoted"):
                    await _quote(context, job)
                    continue
                ready = await bulk.run(
                    job, _progress(context), stopping=lambda: _stopping(context)
                )
                if ready is not None:
                    await _deliver(context, ready)
            except (TelegramError, ProviderError) as exc:
                _LOGGER.warning("bulk job paused, retrying later: %s", type(exc).__name__)


def _stopping(context: BotContext) -> bool:
    """The application stops or the lease moved: pause after the current row."""
    return not context.application.running or not holds_lease(context.bot_data)


async def _quote(context: BotContext, job: Document) -> None:
    """Quotes a ``quoting`` job and sends its quote (again, if a send failed)."""
    bulk = context.services.bulk
    quote = await bulk.quote(job) if job["status"] == "quoting" else await bulk.quote_of(job)
    if quote is None:
        return
    user_id = int(job["user_id"])
    lang = await context.services.users.language_of(user_id, context.i18n.default)
    balance = await context.services.balance.balance_cents(user_id)
    text, markup = quote_message(context.i18n, lang, quote.job, quote.failed, balance)
    try:
        await context.bot.send_message(int(job["chat_id"]), text, reply_markup=markup)
    except Forbidden:
        await context.services.users.mark_bot_blocked(user_id)
    await bulk.quote_notified(quote.job["_id"])


def _progress(context: BotContext) -> ProgressCallback:
    interval = context.settings.bulk.progress_interval_seconds
    last: dict[str, float] = {}

    async def on_progress(job: Document, bought: int, total: int) -> None:
        now = time.monotonic()
        key = str(job["_id"])
        if bought < total and now - last.get(key, 0.0) < interval:
            return
        last[key] = now
        await _edit_progress(context, job, bought, total)

    return on_progress


async def _edit_progress(context: BotContext, job: Document, bought: int, total: int) -> None:
    message_id = job.get("progress_message_id")
    if message_id is None:
        current = await context.services.bulk.get(None, job["_id"])
        message_id = (current or {}).get("progress_message_id")
    if not isinstance(message_id, int):
        return
    lang = await context.services.users.language_of(int(job["user_id"]), context.i18n.default)
    text = context.i18n.t(lang, "bulk.progress", bought=bought, total=total)
    try:
        await context.bot.edit_message_text(
            text, chat_id=int(job["chat_id"]), message_id=message_id
        )
    except BadRequest as exc:
        if not is_bad_request(exc, NOT_MODIFIED, TO_EDIT_NOT_FOUND):
            raise
    except Forbidden:
        pass  # the customer blocked the bot; the labels stay in My labels


def _dollars(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


async def _deliver(context: BotContext, job: Document) -> None:
    """The labels (merged PDF, concatenated ZPL or zipped PNGs, by the format they were
    bought in), the results CSV and the final summary; then ``done``. Sent by the one
    worker that claims them (``BulkService.claim_delivery``)."""
    bulk = context.services.bulk
    claimed = await bulk.claim_delivery(job["_id"])
    if claimed is None:
        return  # another worker sends them (or has sent them)
    job = claimed
    i18n = context.i18n
    user_id = int(job["user_id"])
    chat_id = int(job["chat_id"])
    lang = await context.services.users.language_of(user_id, i18n.default)
    rows = await bulk.rows(job["_id"])
    bought = [row for row in rows if row["status"] == "purchased"]
    failed = [row for row in rows if row["status"] == "failed"]
    await _edit_progress(context, job, len(bought), int(job.get("quoted_count") or 0))
    parts = await bulk.label_files(rows)
    pages = sum(part.count for part in parts)
    try:
        for number, part in enumerate(parts, start=1):
            suffix = f"-{number}" if len(parts) > 1 else ""
            name = f"labels-{job['_id']}{suffix}.{part.extension}"
            upload = InputFile(part.data, filename=name)
            upload.mimetype = _MIME[part.extension]
            await context.bot.send_document(
                chat_id,
                upload,
                caption=i18n.t(lang, f"bulk.{part.file_format}_caption", count=part.count),
            )
        results = csv_bytes(
            list(RESULT_COLUMNS), results_rows(rows, _dollars)
        )
        await context.bot.send_document(
            chat_id,
            InputFile(results, filename=f"results-{job['_id']}.csv"),
            caption=i18n.t(lang, "bulk.results_caption"),
        )
        spent = sum(int(row["price_cents"]) for row in bought)
        text = i18n.t(
            lang,
            "bulk.done",
            bought=len(bought),
            failed=len(failed),
            spent=i18n.money(lang, spent),
            balance=i18n.money(lang, await context.services.balance.balance_cents(user_id)),
        )
        stop = str(job.get("stop_reason") or "")
        if stop:
            text += "\n\n" + i18n.t(lang, f"bulk.stopped.{stop}")
        await context.bot.send_message(chat_id, text)
    except Forbidden:
        await context.services.users.mark_bot_blocked(user_id)
    await bulk.finish(job["_id"], pages=pages)
