"""My labels: newest first, five a page, with a button to get each PDF again.

An active label shows the last day on which it can be refunded; the Refund button appears
only where the refund rules (``RefundService.offers``) would accept a request now (not for
a used label). "📍 Track" shows the carrier's latest events (``TrackingService``);
"🧾 Receipt" sends the label's receipt again (also for a refunded label). A forged or
foreign order id gets "label not found".

"⬇️ Formats" lists the file formats the label can be downloaded in: the carrier's
``label_download`` links of the bought label (ShipStation v2 cannot re-render a bought
label, so a letter-size PDF, for one, stays a PDF); a format it does not link is refused.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.keyboards import Button, inline
from bot.notices import tracking_place
from bot.receipts import render_receipt
from conversations.order import deliver_label
from handlers.balance import format_when
from handlers.common import ack, lang_of, reply
from handlers.label_files import send_label_as
from handlers.label_format import format_name
from handlers.refunds import window_text
from models.shipping import label_format
from providers.errors import ProviderError
from services.purchase import label_downloads, label_file_format
from services.receipts import receipt_of
from services.shipping import CarrierUnavailable
from storage.client import Document

# How many of the newest events the Track button shows.
TRACK_EVENTS = 5

# Orders that have a receipt: a label was bought (and may have been refunded since).
_RECEIPT_STATUSES = ("purchased", "refunded")

# Verdicts for which the refund window is worth showing: it is open, or still ahead.
_OPEN = ("accepted", "too_recent")


async def show_labels(update: Update, context: BotContext) -> None:
    user = update.effective_user
    assert user is not None
    query = update.callback_query
    page = 1
    if query is not None and query.data and query.data.startswith("lbl:page:"):
        page = int(query.data.rsplit(":", 1)[-1])
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    orders, page, pages = await context.services.orders.history(user.id, page)
    if not orders:
        empty = [
            [
                (i18n.t(lang, "menu.order"), "menu:order"),
                (i18n.t(lang, "common.menu"), "menu:main"),
            ]
        ]
        await reply(update, context, i18n.t(lang, "labels.empty"), inline(empty))
        return
    lines = [i18n.t(lang, "labels.title", page=page, pages=pages)]
    rows: list[list[Button]] = []
    offers = await context.services.refunds.offers(orders)
    for order in orders:
        tracking = str(order.get("tracking_number") or "—")
        lines.append(
            i18n.t(
                lang,
                "labels.row",
                date=format_when(i18n, lang, order["created_at"]),
                tracking=tracking,
                status=i18n.t(lang, f"labels.status.{order['status']}"),
                price=i18n.money(lang, int(order.get("price_cents") or 0)),
            )
        )
        offer = offers.get(order["_id"])
        if offer is not None and offer.window is not None and offer.verdict in _OPEN:
            lines.append(window_text(context, lang, offer.window))
        if order["status"] == "purchased":
            row: list[Button] = []
            if not order.get("anonymised_by"):  # the PDF went with a data deletion
                label = i18n.t(lang, "labels.resend", tracking=tracking[-12:])
                row.append((label, f"lbl:pdf:{order['_id']}"))
                row.append((i18n.t(lang, "labels.formats"), f"lbl:fmt:{order['_id']}"))
            row.append((i18n.t(lang, "tracking.button"), f"lbl:trk:{order['_id']}"))
            row.append((i18n.t(lang, "labels.receipt"), f"lbl:rcp:{order['_id']}"))
            if offer is not None and offer.offered:
                row.append(
                    (
                        i18n.t(lang, "labels.refund", tracking=tracking[-8:]),
                        f"rf:one:{order['_id']}",
                    )
                )
            rows.append(row)
        elif order["status"] in _RECEIPT_STATUSES:
            rows.append([(i18n.t(lang, "labels.receipt"), f"lbl:rcp:{order['_id']}")])
    nav: list[Button] = []
    if page > 1:
        nav.append((i18n.t(lang, "common.prev"), f"lbl:page:{page - 1}"))
    if page < pages:
        nav.append((i18n.t(lang, "common.next"), f"lbl:page:{page + 1}"))
    if nav:
        rows.append(nav)
    rows.append([(i18n.t(lang, "common.menu"), "menu:main")])
    await reply(update, context, "\n".join(lines), inline(rows), edit=query is not None)


async def resend_pdf(update: Update, context: BotContext) -> None:
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    order = await context.services.orders.get(user.id, query.data.rsplit(":", 1)[-1])
    if order is None or order["status"] != "purchased" or order.get("anonymised_by"):
        await ack(update, context.i18n.t(lang_of(update, context), "labels.not_found"), alert=True)
        return
    await ack(update)
    await deliver_label(update, context, order)


async def resend_receipt(update: Update, context: BotContext) -> None:
    """🧾 Receipt: the label's receipt again (the customer's own labels only)."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang = lang_of(update, context)
    order = await context.services.orders.get(user.id, query.data.rsplit(":", 1)[-1])
    if order is None or order["status"] not in _RECEIPT_STATUSES:
        await ack(update, context.i18n.t(lang, "labels.not_found"), alert=True)
        return
    await ack(update)
    await reply(update, context, render_receipt(context.i18n, lang, receipt_of(order)))


async def _owned_label(update: Update, context: BotContext, order_id: str) -> Document | None:
    """The customer's own bought label with its file, else None (after a "not found")."""
    user = update.effective_user
    assert user is not None
    order = await context.services.orders.get(user.id, order_id)
    if order is None or order["status"] != "purchased" or order.get("anonymised_by"):
        await ack(update, context.i18n.t(lang_of(update, context), "labels.not_found"), alert=True)
        return None
    return order


async def show_formats(update: Update, context: BotContext) -> None:
    """⬇️ Formats: one button per file format the carrier links for this label."""
    query = update.callback_query
    assert query is not None and query.data is not None
    order = await _owned_label(update, context, query.data.rsplit(":", 1)[-1])
    if order is None:
        return
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    tracking = str(order.get("tracking_number") or "—")
    bought = format_name(i18n, lang, _bought_key(order))
    links = label_downloads(order)
    if set(links) <= {label_file_format(order)}:
        text = i18n.t(lang, "labels.formats_none", tracking=tracking, name=bought)
        await reply(update, context, text)
        return
    buttons = [
        (i18n.t(lang, f"labels.download.{fmt}"), f"lbl:dl:{order['_id']}:{fmt}") for fmt in links
    ]
    text = i18n.t(lang, "labels.formats_title", tracking=tracking, name=bought)
    await reply(update, context, text, inline([buttons]))


def _bought_key(order: Document) -> str:
    """The format key the label was bought in (orders from before formats: 4x6 PDF)."""
    stored = order.get("label_format")
    if isinstance(stored, str):
        return label_format(stored).key
    return "pdf_letter" if order.get("label_layout") == "letter" else "pdf_4x6"


async def download_as(update: Update, context: BotContext) -> None:
    """Sends the label in the pressed format if the carrier links it; else refuses."""
    query = update.callback_query
    chat = update.effective_chat
    assert query is not None and query.data is not None and chat is not None
    _, _, order_id, fmt = query.data.split(":", 3)
    order = await _owned_label(update, context, order_id)
    if order is None:
        return
    lang = lang_of(update, context)
    i18n = context.i18n
    if fmt not in label_downloads(order):
        await ack(update, i18n.t(lang, "labels.format_unavailable"), alert=True)
        return
    await ack(update)
    tracking = str(order.get("tracking_number") or "")
    caption = i18n.t(
        lang,
        "labels.download_caption",
        tracking=tracking,
        format=i18n.t(lang, f"labels.download.{fmt}"),
    )
    try:
        await send_label_as(context, chat.id, order, fmt, caption)
    except (ProviderError, CarrierUnavailable, LookupError):
        await reply(update, context, i18n.t(lang, "labels.download_failed"))


async def track(update: Update, context: BotContext) -> None:
    """📍 Track: the label's latest events, asked of the carrier now."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    view = await context.services.tracking.for_customer(user.id, query.data.rsplit(":", 1)[-1])
    if view is None:
        await ack(update, i18n.t(lang, "labels.not_found"), alert=True)
        return
    await ack(update)
    tracking = str(view.order.get("tracking_number") or "—")
    if view.info is None:
        last = (view.order.get("tracking") or {}).get("status_text")
        status = last or i18n.t(lang, "tracking.status_unknown")
        text = i18n.t(lang, "tracking.unavailable", tracking=tracking, status=status)
        await reply(update, context, text)
        return
    info = view.info
    newest = sorted(
        info.events, key=lambda e: e.occurred_at.timestamp() if e.occurred_at else 0, reverse=True
    )[:TRACK_EVENTS]
    status = (newest[0].text if newest else info.status_description) or i18n.t(
        lang, "tracking.status_unknown"
    )
    lines = [i18n.t(lang, "tracking.title", tracking=tracking, status=status)]
    for event in newest:
        place = tracking_place(event)
        lines.append(
            i18n.t(
                lang,
                "tracking.event",
                when=format_when(i18n, lang, event.occurred_at) if event.occurred_at else "—",
                text=event.text or "—",
                place=i18n.t(lang, "tracking.place", place=place) if place else "",
            )
        )
    if not newest:
        lines.append(i18n.t(lang, "tracking.no_events"))
    await reply(update, context, "\n".join(lines))


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("labels", show_labels),
        CallbackQueryHandler(show_labels, pattern=r"^(menu:labels|lbl:page:\d{1,4})$"),
        CallbackQueryHandler(resend_pdf, pattern=r"^lbl:pdf:[0-9a-f]{24}$"),
        CallbackQueryHandler(track, pattern=r"^lbl:trk:[0-9a-f]{24}$"),
        CallbackQueryHandler(resend_receipt, pattern=r"^lbl:rcp:[0-9a-f]{24}$"),
        CallbackQueryHandler(show_formats, pattern=r"^lbl:fmt:[0-9a-f]{24}$"),
        CallbackQueryHandler(download_as, pattern=r"^lbl:dl:[0-9a-f]{24}:[A-Za-z0-9_.-]{1,16}$"),
    ]
