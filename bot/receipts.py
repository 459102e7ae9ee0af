"""The receipt of a bought label in the customer's language: one place for its wording.

Sent once after the purchase (the caption of the label PDF, claimed through
``receipt_sent_at``) and again from My labels ("🧾 Receipt"). Lines that do not apply
(insurance, confirmation, postage, balance) are left out, never shown empty.
"""

from __future__ import annotations

import html
import re
from datetime import UTC

from babel.dates import format_time

from bot.i18n import I18n
from services.receipts import Receipt

# Telegram's limit for a document caption, counted after entity parsing.
CAPTION_LIMIT = 1024

_TAG = re.compile(r"<[^>]+>")


def visible_length(text: str) -> int:
    """Length of HTML-formatted text as Telegram counts it (tags gone, entities one char)."""
    return len(html.unescape(_TAG.sub("", text)))


def fits_caption(text: str) -> bool:
    return visible_length(text) <= CAPTION_LIMIT


def render_receipt(i18n: I18n, lang: str, receipt: Receipt) -> str:
    money = i18n.money
    lines = [i18n.t(lang, "receipt.title", order=receipt.short_id)]
    if receipt.service:
        lines.append(i18n.t(lang, "receipt.service", service=receipt.service))
    if receipt.tracking:
        lines.append(i18n.t(lang, "receipt.tracking", tracking=receipt.tracking))
    postage = receipt.postage_cents
    if postage is not None:
        lines.append(i18n.t(lang, "receipt.postage", price=money(lang, postage)))
    if receipt.insurance_price_cents or receipt.insured_value_cents:
        price = (
            money(lang, receipt.insurance_price_cents)
            if receipt.insurance_price_cents
            else i18n.t(lang, "receipt.included")
        )
        if receipt.insured_value_cents:
            lines.append(
                i18n.t(
                    lang,
                    "receipt.insurance_value",
                    value=money(lang, receipt.insured_value_cents),
                    price=price,
                )
            )
        else:
            lines.append(i18n.t(lang, "receipt.insurance", price=price))
    if receipt.has_confirmation:
        price = (
            money(lang, receipt.confirmation_price_cents)
            if receipt.confirmation_price_cents
            else i18n.t(lang, "receipt.included")
        )
        lines.append(i18n.t(lang, f"receipt.confirmation.{receipt.confirmation}", price=price))
    lines.append(i18n.t(lang, "receipt.total", price=money(lang, receipt.price_cents)))
    if receipt.purchased_at is not None:
        at = receipt.purchased_at.astimezone(UTC)
        lines.append(
            i18n.t(
                lang,
                "receipt.date",
                date=i18n.date(lang, at.date()),
                time=format_time(at, "short", tzinfo=UTC, locale=lang),
            )
        )
    if receipt.balance_after_cents is not None:
        lines.append(
            i18n.t(lang, "receipt.balance", balance=money(lang, receipt.balance_after_cents))
        )
    if receipt.refunded:
        lines.append(i18n.t(lang, "receipt.refunded"))
    return "\n".join(lines)
