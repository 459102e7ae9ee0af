"""Payment data exchanged with the crypto payment provider (pure data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "Invoice",
    "OxaPayCallback",
    "PaymentInfo",
    "PaymentStatus",
    "PaymentTx",
]


class PaymentStatus(StrEnum):
    """OxaPay v1 statuses (lower case). Fields stay `str`: unknown values pass through."""

    NEW = "new"
    WAITING = "waiting"
    PAYING = "paying"
    PAID = "paid"
    MANUAL_ACCEPT = "manual_accept"
    UNDERPAID = "underpaid"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoice:
    """A created invoice. `payment_url` is None when the invoice was recovered by lookup
    (OxaPay's payment information does not return the URL)."""

    track_id: str
    payment_url: str | None
    amount_cents: int
    currency: str
    order_id: str | None
    expires_at: datetime | None
    created_at: datetime | None = None
    recovered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentTx:
    """One blockchain transaction; `amount` (received) is in `currency`, the payer's coin
    (so not cents); `value` is its worth in the invoice currency, `rate` the coin's price."""

    tx_hash: str | None
    status: str | None
    amount: Decimal | None
    currency: str | None
    network: str | None = None
    confirmations: int | None = None
    date: datetime | None = None
    value: Decimal | None = None
    rate: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentInfo:
    """State of one payment. `paid_amount_cents` sums what the txs are worth in the invoice
    currency (their converted `value`); None when unknown (no tx, or one without a value
    in a coin other than the invoice currency)."""

    track_id: str
    status: str
    amount_cents: int
    currency: str
    order_id: str | None
    expires_at: datetime | None
    paid_amount_cents: int | None = None
    created_at: datetime | None = None
    type: str | None = None
    txs: tuple[PaymentTx, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OxaPayCallback:
    """A parsed (not yet trusted unless its signature was verified) webhook payload."""

    track_id: str
    status: str
    type: str | None
    amount: Decimal
    amount_cents: int
    currency: str
    order_id: str | None
    paid_amount_cents: int | None = None
    value: Decimal | None = None
    date: datetime | None = None
    txs: tuple[PaymentTx, ...] = ()
