"""Label files into the chat: the bought label (by Telegram file id once known), or the
same label in another file format where the carrier's ``label_download`` links one."""

from __future__ import annotations

from telegram import InputFile

from bot.context import BotContext
from models.shipping import file_mime_type
from storage.client import Document


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
