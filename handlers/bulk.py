"""``/bulk``: labels from a spreadsheet (thin; the rules are ``services/bulk.py``).

The customer sends a ``.csv``/``.xlsx`` document → validation report (+ a CSV of the rows
with errors) → a sender button quotes the valid rows → "Pay $X" confirms the job at that
total → ``jobs/bulk.py`` buys row by row and delivers one merged PDF and a results CSV.
Buttons carry the job id (and the Pay button the total), so an old button does nothing.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re

from telegram import InlineKeyboardMarkup, InputFile, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.i18n import Html, I18n
from bot.keyboards import Button, inline
from conversations.order import field_error
from handlers.common import ack, lang_of, reply
from services.addresses import FieldError
from services.bulk import (
    TEMPLATE_CSV,
    BulkFileError,
    Validation,
    csv_bytes,
)
from storage.client import Document

_LOGGER = logging.getLogger(__name__)

_JOB = r"[0-9a-f]{24}"
_ERROR_LIST = 10  # rows listed in the chat; the CSV has them all
_TAG = re.compile(r"<[^>]+>")


async def explain(update: Update, context: BotContext) -> None:
    """The format, the limits and a template file to fill in."""
    lang = lang_of(update, context)
    i18n = context.i18n
    config = context.services.bulk.config
    text = i18n.t(
        lang, "bulk.help", max_rows=config.max_rows, max_kb=config.max_bytes // 1024
    )
    await reply(update, context, text)
    chat = update.effective_chat
    assert chat is not None
    await context.bot.send_document(
        chat.id,
        InputFile(TEMPLATE_CSV.encode("utf-8"), filename="bulk-template.csv"),
        caption=i18n.t(lang, "bulk.template_caption"),
    )


def _file_error(i18n: I18n, lang: str, error: BulkFileError) -> str:
    key = f"bulk.file_error.{error.code}"
    if key not in i18n.catalogs[i18n.default].messages:
        key = "bulk.file_error.unreadable"
    params = {"max": "", "max_kb": "", "columns": ""}
    params.update({k: str(v) for k, v in error.params.items()})
    return i18n.t(lang, key, **params)


async def receive_file(update: Update, context: BotContext) -> None:
    """A document in a private chat: validated at once, answered with a report."""
    message = update.effective_message
    user = update.effective_user
    chat = update.effective_chat
    assert message is not None and user is not None and chat is not None
    document = message.document
    assert document is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    bulk = context.services.bulk
    name = document.file_name or ""
    if not name.lower().endswith((".csv", ".xlsx", ".txt")):
        await reply(update, context, _file_error(i18n, lang, BulkFileError("unsupported_type")))
        return
    if (document.file_size or 0) > bulk.config.max_bytes:
        error = BulkFileError("too_large", max_kb=bulk.config.max_bytes // 1024)
        await reply(update, context, _file_error(i18n, lang, error))
        return
    try:
        telegram_file = await context.bot.get_file(document.file_id)
        data = bytes(await telegram_file.download_as_bytearray())
    except TelegramError as exc:
        _LOGGER.warning("bulk file download failed: %s", type(exc).__name__)
        await reply(update, context, i18n.t(lang, "bulk.download_failed"))
        return
    try:
        job, validation = await bulk.create_job(user.id, chat.id, name, data)
    except BulkFileError as error:
        await reply(update, context, _file_error(i18n, lang, error))
        return
    await _report(update, context, job, validation)


async def _report(
    update: Update, context: BotContext, job: Document, validation: Validation
) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None and user is not None
    text = i18n.t(
        lang, "bulk.report", ok=len(validation.rows), errors=len(validation.errors)
    )
    if validation.errors:
        lines = []
        for error in validation.errors[:_ERROR_LIST]:
            # Each part is rendered (escaped) already; at most 3 reasons a row in the chat.
            messages = Html("; ".join(_error_text(i18n, lang, e) for e in error.errors[:3]))
            lines.append(i18n.t(lang, "bulk.report_row", row=error.row, errors=messages))
        text += "\n\n" + "\n".join(lines)
        if len(validation.errors) > _ERROR_LIST:
            more = len(validation.errors) - _ERROR_LIST
            text += "\n" + i18n.t(lang, "bulk.report_more", more=more)
    rows: list[list[Button]] = []
    if validation.rows:
        templates = await context.services.orders.templates(user.id)
        usable = [t for t in templates if (t.get("address") or {}).get("phone")]
        # The default sender (if it has the phone a shipment needs) comes first, marked.
        default = await context.services.orders.default_sender(user.id)
        if default is not None and any(t["_id"] == default["_id"] for t in usable):
            usable = [default, *(t for t in usable if t["_id"] != default["_id"])]
        else:
            default = None
        if usable:
            text += "\n\n" + i18n.t(lang, "bulk.choose_sender", ok=len(validation.rows))
            for template in usable[:8]:
                key = "bulk.sender_button"
                if default is not None and template["_id"] == default["_id"]:
                    key = "bulk.default_sender_button"
                # Button texts are not HTML: the name as typed.
                label = html.unescape(i18n.t(lang, key, name=template["name"]))
                rows.append([(label[:64], f"bulk:quote:{job['_id']}:{template['_id']}")])
        else:
            text += "\n\n" + i18n.t(lang, "bulk.no_sender")
    await reply(update, context, text, inline(rows) if rows else None)
    if validation.errors:
        # The bad rows as sent, plus their reasons: fix them and send this file back.
        body = [
            [
                error.row,
                *(error.values.get(column, "") for column in validation.columns),
                "; ".join(_error_text(i18n, lang, e, plain=True) for e in error.errors),
            ]
            for error in validation.errors
        ]
        data = csv_bytes(["row", *validation.columns, "errors"], body)
        await context.bot.send_document(
            chat.id,
            InputFile(data, filename="bulk-errors.csv"),
            caption=i18n.t(lang, "bulk.errors_caption", errors=len(validation.errors)),
        )


def _error_text(i18n: I18n, lang: str, error: FieldError, *, plain: bool = False) -> str:
    """``column: message`` in the customer's language (``plain``: without HTML, for CSV)."""
    known = i18n.catalogs[i18n.default].messages
    column = error.field
    for key in (f"order.field.{error.field}", f"bulk.column.{error.field}"):
        if key in known:
            column = i18n.t(lang, key)
            break
    if error.code == "formula":
        message = i18n.t(lang, "bulk.formula")
    else:
        message = field_error(i18n, lang, error)
    text = f"{column}: {message}"
    return html.unescape(_TAG.sub("", text)) if plain else text


async def quote(update: Update, context: BotContext) -> None:
    """A sender button: the job quotes every valid row in the background (``jobs/bulk.py``)
    and sends one summary with the Pay button."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    _, _, job_id, template_id = query.data.split(":")
    lang = lang_of(update, context)
    i18n = context.i18n
    services = context.services
    template = await services.orders.template(user.id, template_id)
    job = None
    if template is not None:
        job = await services.bulk.start_quote(user.id, job_id, dict(template["address"]))
    if job is None:
        await ack(update, i18n.t(lang, "errors.stale_button"), alert=True)
        return
    await ack(update)
    await _disarm(update)
    await reply(update, context, i18n.t(lang, "bulk.quoting", rows=job.get("valid_count", 0)))


def quote_message(
    i18n: I18n, lang: str, job: Document, failed: list[tuple[int, str]], balance: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The quote: total, breakdown by service, balance, and "Pay $X" (or top up first)."""
    total = int(job.get("total_cents") or 0)
    lines = [
        i18n.t(
            lang,
            "bulk.quote_line",
            service=entry["service"],
            count=entry["count"],
            price=i18n.money(lang, int(entry["cents"])),
        )
        for entry in job.get("breakdown") or []
    ]
    text = i18n.t(
        lang,
        "bulk.quote",
        count=int(job.get("quoted_count") or 0),
        total=i18n.money(lang, total),
        balance=i18n.money(lang, balance),
        breakdown=Html("\n".join(lines)),
    )
    corrected = int(job.get("corrected_count") or 0)
    if corrected:
        text += "\n\n" + i18n.t(lang, "bulk.quote_corrected", count=corrected)
    if failed:
        listed = ", ".join(
            f"{row} ({i18n.t(lang, f'bulk.quote_failed.{reason}')})" for row, reason in failed[:10]
        )
        text += "\n\n" + i18n.t(
            lang, "bulk.quote_failures", count=len(failed), rows=Html(listed)
        )
    rows: list[list[Button]] = []
    if job.get("quoted_count"):
        pay = i18n.t(lang, "bulk.pay", total=i18n.money(lang, total))
        rows.append([(pay, f"bulk:pay:{job['_id']}:{total}")])
        if balance < total:
            text += "\n\n" + i18n.t(
                lang, "bulk.short", shortfall=i18n.money(lang, total - balance)
            )
            rows.append([(i18n.t(lang, "order.topup_button"), "menu:topup")])
    return text, inline(rows) if rows else None


async def pay(update: Update, context: BotContext) -> None:
    """Confirms the job at the total the button shows; the purchase job buys the rows."""
    query = update.callback_query
    user = update.effective_user
    chat = update.effective_chat
    assert query is not None and query.data is not None and user is not None and chat
    _, _, job_id, cents = query.data.split(":")
    lang = lang_of(update, context)
    i18n = context.i18n
    bulk = context.services.bulk
    result = await bulk.confirm(user.id, job_id, int(cents))
    if result.status == "insufficient":
        await ack(update)
        text = i18n.t(
            lang,
            "bulk.insufficient",
            balance=i18n.money(lang, result.balance_cents),
            total=i18n.money(lang, int(cents)),
        )
        await reply(
            update, context, text, inline([[(i18n.t(lang, "order.topup_button"), "menu:topup")]])
        )
        return
    if result.status != "confirmed" or result.job is None:
        await ack(update, i18n.t(lang, "bulk.stale"), alert=True)
        return
    await ack(update)
    await _disarm(update)
    job = result.job
    sent = await context.bot.send_message(
        chat.id,
        i18n.t(lang, "bulk.progress", bought=0, total=int(job.get("quoted_count") or 0)),
    )
    await bulk.set_progress_message(job["_id"], sent.message_id)


async def _disarm(update: Update) -> None:
    """The pressed message loses its buttons: one press, one effect."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    with contextlib.suppress(BadRequest):  # already without buttons, or gone
        await query.edit_message_reply_markup(reply_markup=None)


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("bulk", explain, filters=filters.ChatType.PRIVATE),
        MessageHandler(filters.Document.ALL & filters.ChatType.PRIVATE, receive_file),
        CallbackQueryHandler(quote, pattern=rf"^bulk:quote:{_JOB}:{_JOB}$"),
        CallbackQueryHandler(pay, pattern=rf"^bulk:pay:{_JOB}:\d{{1,9}}$"),
    ]
