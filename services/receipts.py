"""What a receipt says about one bought label, read from its order (no Telegram, no i18n).

``bot/receipts.py`` renders it in the customer's language. ``price_cents`` is what the
customer was charged in total; insurance and delivery confirmation (when the order has
them) are parts of it, so the receipt also shows the postage alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.client import Document

CONFIRMATIONS = ("signature", "adult_signature")


def short_order_id(order_id: object) -> str:
    """The order id's last 8 hex digits (its counter part; the first ones are a time)."""
    return str(order_id)[-8:].upper()


def service_label(rate: dict[str, Any]) -> str:
    """Carrier and service as one name, the carrier not repeated ("USPS Ground Advantage"),
    nothing doubled when either is missing."""
    carrier = str(rate.get("carrier") or "").strip()
    service = str(rate.get("service") or "").strip()
    if carrier and service.lower().startswith(carrier.lower()):
        carrier = ""
    return " ".join(part for part in (carrier, service) if part)


def _cents(order: Document, name: str) -> int:
    value = order.get(name)
    return int(value) if isinstance(value, int) and value > 0 else 0


@dataclass(frozen=True)
class Receipt:
    order_id: str
    service: str
    tracking: str
    price_cents: int
    purchased_at: datetime | None
    insured_value_cents: int = 0
    insurance_price_cents: int = 0
    confirmation: str = "none"
    confirmation_price_cents: int = 0
    refunded: bool = False
    balance_after_cents: int | None = None

    @property
    def short_id(self) -> str:
        return short_order_id(self.order_id)

    @property
    def has_confirmation(self) -> bool:
        return self.confirmation in CONFIRMATIONS

    @property
    def extras_cents(self) -> int:
        return self.insurance_price_cents + (
            self.confirmation_price_cents if self.has_confirmation else 0
        )

    @property
    def postage_cents(self) -> int | None:
        """The label alone, when the total includes extras (else the total says it)."""
        extras = self.extras_cents
        if not extras or extras >= self.price_cents:
            return None
        return self.price_cents - extras


def receipt_of(order: Document, *, balance_after_cents: int | None = None) -> Receipt:
    """The receipt of a bought (or since refunded) label."""
    confirmation = str(order.get("confirmation") or "none")
    return Receipt(
        order_id=str(order["_id"]),
        service=service_label(order.get("rate") or {}),
        tracking=str(order.get("tracking_number") or ""),
        price_cents=int(order.get("price_cents") or 0),
        purchased_at=order.get("purchased_at"),
        insured_value_cents=_cents(order, "insured_value_cents"),
        insurance_price_cents=_cents(order, "insurance_price_cents"),
        confirmation=confirmation if confirmation in CONFIRMATIONS else "none",
        confirmation_price_cents=_cents(order, "confirmation_price_cents"),
        refunded=order.get("status") == "refunded",
        balance_after_cents=balance_after_cents,
    )


def margin_cents(order: Document) -> int | None:
    """What the shop kept on an order: price charged minus the carrier's cost (None while
    the cost is unknown)."""
    cost = order.get("carrier_cost_cents")
    if not isinstance(cost, int):
        return None
    return int(order.get("price_cents") or 0) - cost
