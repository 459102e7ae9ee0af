"""Buying a label safely, without multi-document transactions.

1. Claim the draft: ``draft`` → ``purchasing``, conditional on the offer the Pay button
   showed (``offer_id`` and ``price_cents``): a stale button, or a double tap, loses the
   conditional update and nothing is charged.
2. Debit the balance through the ledger, key ``label:<order_id>``; a short balance puts
   the order back to ``draft`` with nothing debited. The order is read again after the
   debit: if the recovery job failed it meanwhile, the debit is given back at once.
3. Buy the label from the rate (never retried blindly).
4. Store label id, tracking number and cost: ``purchased``.

The label is bought in the customer's label format (``/format``), read when the draft is
claimed and stored on the order (``label_format``), so recovery and re-sending use what
was bought; ``label_downloads`` keeps the carrier's link per file format.

Failing an order always wins the transition first and credits after: ``purchasing`` →
``failed`` (with ``compensation_pending``), then the compensation ``compensation:<id>``
(only if the debit exists), then the flag is cleared. A crash between the two writes
leaves the flag; ``recover_stuck`` credits those orders (the key makes it exactly once).
An order failed before its debit existed keeps the flag for ``DEBIT_WATCH``: a stalled
purchase may still debit it and die before it reads the order again, and the next
recovery run then gives that debit back.

If the outcome is unknown (timeout) or the process dies mid-way, the order stays
``purchasing`` and ``recover_stuck`` asks the carrier for a label bought from the order's
``rate_id``: a label found completes the order, none found fails and compensates it. A
label that completes at the carrier after recovery failed its order (the customer has
their money back) is voided and admins are alerted, never kept silently.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bson import ObjectId

from models.shipping import LABEL_FILE_FORMATS, Label, label_format
from providers.errors import ProviderError, ProviderRejected, ProviderUnavailable
from services.clock import Clock, utc_now
from services.shipping import CarrierUnavailable, ShippingGateway
from storage.client import Document
from storage.ledger import InsufficientFunds, LedgerRepo
from storage.orders import OrdersRepo

_LOGGER = logging.getLogger(__name__)

# How long a failed order without a debit is watched for a late one. The debit follows the
# claim with nothing but database calls between them; no worker stalls for a day.
DEBIT_WATCH = timedelta(hours=24)


class PurchaseNotices(Protocol):
    async def label_compensated(self, order: Document, reason: str, *, tell_user: bool) -> None:
        ...

    async def label_recovered(self, order: Document) -> None: ...

    async def label_orphaned(self, order: Document, label: Label, *, voided: bool) -> None:
        ...


class PurchaseStatus(StrEnum):
    PURCHASED = "purchased"
    INSUFFICIENT = "insufficient"
    FAILED = "failed"
    PENDING = "pending"  # the carrier's answer is unknown: recovery resolves it
    ALREADY = "already"
    CHANGED = "changed"  # the button no longer matches the draft
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class PurchaseResult:
    status: PurchaseStatus
    order: Document | None = None
    shortfall_cents: int = 0
    reason: str = ""
    balance_cents: int = 0


@dataclass(frozen=True)
class LabelFile:
    data: bytes
    file_format: str  # pdf, png or zpl


def label_file_format(order: Document) -> str:
    """The file format an order's label was bought in (orders from before formats: pdf)."""
    fmt = order.get("label_file_format")
    return fmt if fmt in LABEL_FILE_FORMATS else "pdf"


def label_downloads(order: Document) -> dict[str, str]:
    """The label's download link per file format, as the carrier gave them; the bought
    format is always there while the order has its ``label_url``."""
    links = order.get("label_downloads")
    found = {
        fmt: url
        for fmt, url in (links.items() if isinstance(links, dict) else ())
        if fmt in LABEL_FILE_FORMATS and isinstance(url, str) and url
    }
    if order.get("label_url"):
        found[label_file_format(order)] = str(order["label_url"])
    return {fmt: found[fmt] for fmt in LABEL_FILE_FORMATS if fmt in found}


def _failure_reason(exc: ProviderError) -> str:
    if isinstance(exc, ProviderRejected):
        return exc.code or "rejected"
    if isinstance(exc, ProviderUnavailable):
        return "unavailable"
    return "error"


class PurchaseService:
    def __init__(
        self,
        orders: OrdersRepo,
        ledger: LedgerRepo,
        gateway: ShippingGateway,
        notices: PurchaseNotices,
        *,
        recovery_after: timedelta,
        clock: Clock = utc_now,
        label_format_of: Callable[[int], Awaitable[str]] | None = None,
    ) -> None:
        self._label_format_of = label_format_of
        self._orders = orders
        self._ledger = ledger
        self._gateway = gateway
        self._notices = notices
        self._recovery_after = recovery_after
        self._clock = clock

    async def purchase(
        self, user_id: int, order_id: ObjectId, *, offer_id: str, price_cents: int
    ) -> PurchaseResult:
        """Buys the draft's chosen rate if it still is ``offer_id`` at ``price_cents``."""
        fmt = label_format(
            await self._label_format_of(user_id) if self._label_format_of is not None else None
        )
        now = self._clock()
        order = await self._orders.transition(
            order_id,
            from_status="draft",
            to_status="purchasing",
            now=now,
            fields={
                "purchase_key": f"label:{order_id}",
                "purchase_started_at": now,
                "label_format": fmt.key,
            },
            extra_filter={
                "user_id": user_id,
                "rate": {"$exists": True},
                "offer_id": offer_id,
                "price_cents": price_cents,
            },
        )
        if order is None:
            existing = await self._orders.get(order_id)
            if existing is None or existing["user_id"] != user_id:
                return PurchaseResult(PurchaseStatus.NOT_FOUND)
            if existing["status"] == "draft":
                # the button no longer matches
                return PurchaseResult(PurchaseStatus.CHANGED, existing)
            return PurchaseResult(PurchaseStatus.ALREADY, existing)
        price = int(order["price_cents"])
        try:
            debit = await self._ledger.apply(
                user_id=user_id,
                amount_cents=-price,
                kind="label",
                key=f"label:{order_id}",
                now=now,
                meta={"order_id": str(order_id)},
            )
        except InsufficientFunds as exc:
            back = await self._orders.transition(
                order_id, from_status="purchasing", to_status="draft", now=now
            )
            return PurchaseResult(
                PurchaseStatus.INSUFFICIENT,
                back,
                shortfall_cents=exc.needed_cents - exc.balance_cents,
                balance_cents=exc.balance_cents,
            )
        current = await self._orders.get(order_id)
        if current is None or current["status"] != "purchasing":
            if current is not None and current["status"] == "failed":
                # Recovery failed the order while we were debiting (it may have looked for
                # the debit before it existed): give it back; the key keeps it to one.
                await self._credit_compensation(current, "not_created")
                return PurchaseResult(PurchaseStatus.FAILED, current, reason="not_created")
            return PurchaseResult(PurchaseStatus.ALREADY, current)
        mode = str(order.get("api_mode", "test"))
        try:
            label = await self._gateway.buy(
                mode,
                str(order["rate"]["rate_id"]),
                validate_address=str(order.get("validate_address") or "no_validation"),
                label_format=fmt.file_format,
                label_layout=fmt.layout,
            )
        except (ProviderError, CarrierUnavailable) as exc:
            if isinstance(exc, ProviderUnavailable) and exc.outcome_unknown:
                _LOGGER.warning("label purchase outcome unknown; recovery job will resolve")
                return PurchaseResult(
                    PurchaseStatus.PENDING, order, balance_cents=debit.balance_cents
                )
            reason = _failure_reason(exc) if isinstance(exc, ProviderError) else "unavailable"
            # The customer is answered in the chat right away; admins get an alert.
            failed = await self._compensate(order, reason, tell_user=False)
            return PurchaseResult(PurchaseStatus.FAILED, failed or current, reason=reason)
        done = await self._complete(order, label)
        if done is None:
            late = await self._orders.get(order_id)
            return PurchaseResult(PurchaseStatus.FAILED, late, reason="late")
        return PurchaseResult(PurchaseStatus.PURCHASED, done, balance_cents=debit.balance_cents)

    async def _complete(self, order: Document, label: Label) -> Document | None:
        """``purchasing`` → ``purchased``; None when the order had already been failed (the
        label is then voided and admins told)."""
        now = self._clock()
        done = await self._orders.transition(
            order["_id"],
            from_status="purchasing",
            to_status="purchased",
            now=now,
            fields={
                "label_id": label.label_id,
                "tracking_number": label.tracking_number,
                "shipment_id": label.shipment_id,
                "carrier_cost_cents": label.cost_cents,
                "label_url": label.file_url,
                "label_file_format": label.label_format,
                "label_layout": label.label_layout,
                "label_downloads": dict(label.downloads),
                "carrier_code": label.carrier_code,
                "service_code": label.service_code,
                "purchased_at": now,
                "tracking_due_at": now,  # the tracking job takes it from here
            },
        )
        if done is not None:
            return done
        current = await self._orders.get(order["_id"])
        if current is not None and current.get("label_id") == label.label_id:
            return current  # completed by the other path (purchase vs. recovery) with it
        if current is not None and current["status"] == "failed":
            await self._orphaned(current, label)
        return None

    async def _orphaned(self, order: Document, label: Label) -> None:
        """A label bought for an order that was failed and compensated meanwhile: the
        customer has their money back, so the label is voided (refunded by the carrier)
        and admins are alerted either way; nothing is charged again."""
        mode = str(order.get("api_mode", "test"))
        voided = False
        try:
            voided = (await self._gateway.void(mode, label.label_id)).is_voided
        except (ProviderError, CarrierUnavailable) as exc:
            _LOGGER.warning("void of a late label failed: %s", type(exc).__name__)
        _LOGGER.error("label bought after its order failed; voided=%s", voided)
        await self._orders.set_fields(
            order["_id"],
            {
                "late_label": {
                    "label_id": label.label_id,
                    "tracking_number": label.tracking_number,
                    "cost_cents": label.cost_cents,
                    "voided": voided,
                    "at": self._clock(),
                }
            },
        )
        await self._notices.label_orphaned(order, label, voided=voided)

    async def _compensate(
        self, order: Document, reason: str, *, tell_user: bool = True
    ) -> Document | None:
        """Marks the order failed, then gives the money back (once).

        The transition comes first: only the path that wins it credits, so an order still
        being bought elsewhere is never refunded while its label may yet be bought."""
        now = self._clock()
        failed = await self._orders.transition(
            order["_id"],
            from_status="purchasing",
            to_status="failed",
            now=now,
            fields={"failure_reason": reason, "failed_at": now, "compensation_pending": True},
        )
        if failed is None:
            return None
        await self._credit_compensation(failed, reason)
        await self._notices.label_compensated(failed, reason, tell_user=tell_user)
        return failed

    async def _credit_compensation(self, order: Document, reason: str) -> bool:
        """Credits back the label debit of a failed order, if there is one; idempotent.

        True when it gave a debit back. Without a debit the order stays flagged for
        ``DEBIT_WATCH`` (a stalled purchase may yet debit it), then the flag is cleared."""
        order_id = order["_id"]
        now = self._clock()
        debit = await self._ledger.get(f"label:{order_id}")
        if debit is not None:
            await self._ledger.apply(
                user_id=order["user_id"],
                amount_cents=-debit.amount_cents,
                kind="compensation",
                key=f"compensation:{order_id}",
                now=now,
                meta={"order_id": str(order_id), "reason": reason},
            )
        elif now - order.get("failed_at", now) < DEBIT_WATCH:
            return False
        await self._orders.compensation_settled(order_id, now=now)
        return debit is not None

    async def recover_stuck(self, *, limit: int = 50) -> dict[str, int]:
        """Resolves orders left in ``purchasing`` by a crash or an unknown outcome, and
        credits failed orders whose compensation a crash interrupted."""
        counts: dict[str, int] = {}
        before = self._clock() - self._recovery_after
        for order in await self._orders.stuck_purchasing(started_before=before, limit=limit):
            try:
                outcome = await self._recover_one(order)
            except (ProviderError, CarrierUnavailable) as exc:
                _LOGGER.warning("recovery lookup failed: %s", type(exc).__name__)
                outcome = "retry_later"
            counts[outcome] = counts.get(outcome, 0) + 1
        for order in await self._orders.compensation_pending(failed_before=before, limit=limit):
            reason = str(order.get("failure_reason") or "failed")
            if await self._credit_compensation(order, reason):
                await self._notices.label_compensated(order, reason, tell_user=True)
                counts["compensation_repaired"] = counts.get("compensation_repaired", 0) + 1
        return counts

    async def _recover_one(self, order: Document) -> str:
        mode = str(order.get("api_mode", "test"))
        rate = order.get("rate") or {}
        label = await self._gateway.find_label(
            mode, str(rate["rate_id"]), shipment_id=rate.get("shipment_id")
        )
        if label is None:
            failed = await self._compensate(order, "not_created")
            # None: the purchase completed (or failed) on its own meanwhile; nothing to do.
            return "compensated" if failed is not None else "resolved_elsewhere"
        debit = await self._ledger.get(f"label:{order['_id']}")
        if debit is None:
            # Crashed between the claim and the debit, yet a label exists: charge now.
            try:
                await self._ledger.apply(
                    user_id=order["user_id"],
                    amount_cents=-int(order["price_cents"]),
                    kind="label",
                    key=f"label:{order['_id']}",
                    now=self._clock(),
                    meta={"order_id": str(order["_id"]), "recovered": True},
                )
            except InsufficientFunds:
                _LOGGER.error("recovered a label the balance no longer covers; needs review")
        done = await self._complete(order, label)
        if done is not None:
            await self._notices.label_recovered(done)
        return "completed"

    async def label_pdf(self, order: Document) -> bytes:
        """The label file as bought (a PDF unless the customer chose PNG or ZPL)."""
        return (await self.label_file(order)).data

    async def label_file(self, order: Document, file_format: str | None = None) -> LabelFile:
        """The bought label as a file: in its own format, or in ``file_format`` when the
        carrier's ``label_download`` has a link for it (``LookupError`` otherwise)."""
        own = label_file_format(order)
        wanted = file_format or own
        url = order.get("label_url") if wanted == own else None
        url = url or label_downloads(order).get(wanted)
        if not url:
            raise LookupError(wanted)
        data = await self._gateway.download(str(order.get("api_mode", "test")), url, wanted)
        return LabelFile(data, wanted)

    async def save_file_id(self, order_id: ObjectId, file_id: str) -> None:
        await self._orders.set_fields(order_id, {"label_file_id": file_id})

    async def mark_delivered(self, order_id: ObjectId) -> None:
        """The PDF reached the chat; until then ``undelivered`` keeps offering it."""
        await self._orders.set_fields(order_id, {"label_delivered_at": self._clock()})

    async def claim_receipt(self, order_id: ObjectId) -> datetime | None:
        """Claims the order's after-purchase receipt: the time of the claim, or None when
        another delivery has it (the receipt is sent once)."""
        now = self._clock()
        return now if await self._orders.claim_receipt(order_id, now=now) else None

    async def release_receipt(self, order_id: ObjectId, claimed_at: datetime) -> None:
        """The message with the receipt was refused: the next delivery carries it."""
        await self._orders.release_receipt(order_id, claimed_at=claimed_at)

    async def undelivered(self, *, older_than: timedelta, limit: int = 50) -> list[Document]:
        """Bought labels whose PDF never reached the chat (a crash or a Telegram outage)."""
        return await self._orders.undelivered_labels(
            purchased_before=self._clock() - older_than, limit=limit
        )

    def now(self) -> datetime:
        return self._clock()
