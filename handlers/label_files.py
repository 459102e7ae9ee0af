"""Label files into the chat: the bought label (by Telegram file id once known), or the
same label in another file format where the carrier's ``label_download`` links one."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardMarkup, InputFile
from telegram.error import BadRequest, Forbidden, RetryAfter

from bot.context import BotContext
from bot.receipts import render_receipt
from models.shipping import file_mime_type
from providers.errors import ProviderError
from services.receipts import receipt_of
from storage.client import Document

_LOGGER = logging.getLogger(__name__)


def label_input_file(data: bytes, file_format: str, stem: str) -> InputFile:
    """``<stem>.pdf|png|zpl`` with its MIME type (Python's mimetypes knows no ZPL)."""
    upload = InputFile(data, filename=f"{stem}.{file_format}")
    upload.mimetype = file_mime_type(file_format)
    return upload


async def send_label_document(
    context: BotContext, chat_id: int, order: Document, caption: str
) -> None:
    """Sends the label as bought (by Telegram file id once known) and records the
    delivery."""
    purchase = context.services.purchase
    file_id = order.get("label_file_id")
    if file_id:
        await context.bot.send_document(chat_id, file_id, caption=caption)
    else:
        label = await purchase.label_file(order)
        tracking = str(order.get("tracking_number", ""))
        sent = await context.bot.send_document(
            chat_id,
            label_input_file(label.data, label.file_format, f"label-{tracking}"),
            caption=caption,
        )
        if sent.document is not None:
            await purchase.save_file_id(order["_id"], sent.document.file_id)
    if order.get("label_delivered_at") is None:
        await purchase.mark_delivered(order["_id"])


async def send_label_as(
    context: BotContext, chat_id: int, order: Document, file_format: str, caption: str
) -> None:
    """The label in ``file_format`` (a link from its ``label_download``); not cached: the
    stored file id is the bought format's."""
    label = await context.services.purchase.label_file(order, file_format)
    tracking = str(order.get("tracking_number", ""))
    await context.bot.send_document(
        chat_id,
        label_input_file(label.data, label.file_format, f"label-{tracking}"),
        caption=caption,
    )


async def send_label_with_receipt(
    context: BotContext,
    chat_id: int,
    lang: str,
    order: Document,
    *,
    balance_cents: int | None = None,
    head: str = "",
    tail: str = "",
    markup: InlineKeyboardMarkup | None = None,
    text_if_no_pdf: str | None = None,
) -> None:
    """Delivers a bought label with its receipt in the caption, if this delivery is the
    one that claims the receipt (``receipt_sent_at``: the receipt goes out once however
    often delivery is retried).

    The claim comes after the label file is fetched and is given back when Telegram refused the
    message, so the next delivery carries the receipt; after a timeout or a lost answer
    the message may have arrived, so the claim stays (at most once, never twice). Without
    the label file, ``text_if_no_pdf`` sends the receipt as text (the job sends the file
    later), else the download error is raised before anything is claimed."""
    i18n = context.i18n
    purchase = context.services.purchase
    tracking = str(order.get("tracking_number", ""))
    document: str | InputFile | None = order.get("label_file_id") or None
    if document is None:
        try:
            label = await purchase.label_file(order)
        except ProviderError:
            if text_if_no_pdf is None:
                raise
            _LOGGER.warning("label PDF download failed; the delivery job will retry")
        else:
            document = label_input_file(label.data, label.file_format, f"label-{tracking}")
    claimed_at = await purchase.claim_receipt(order["_id"])
    if claimed_at is not None:
        body = render_receipt(i18n, lang, receipt_of(order, balance_after_cents=balance_cents))
    else:
        body = i18n.t(lang, "order.pdf_caption", tracking=tracking)
    caption = "\n".join(part for part in (head, body, tail) if part)
    try:
        if document is None:
            text = f"{caption}\n\n{text_if_no_pdf}"
            await context.bot.send_message(chat_id, text, reply_markup=markup)
            return
        sent = await context.bot.send_document(
            chat_id, document, caption=caption, reply_markup=markup
        )
    except (BadRequest, Forbidden, RetryAfter):
        # Telegram answered and refused it: the next delivery carries the receipt. Any
        # other failure (timeout, lost answer) may have delivered it: the claim stays.
        if claimed_at is not None:
            await purchase.release_receipt(order["_id"], claimed_at)
        raise
    if isinstance(document, InputFile) and sent.document is not None:
        await purchase.save_file_id(order["_id"], sent.document.file_id)
    if order.get("label_delivered_at") is None:
        await purchase.mark_delivered(order["_id"])
