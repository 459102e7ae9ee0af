"""Refunds of unused labels: eligibility, carrier voids by a job, admin review, one credit.

The credit is the ledger entry ``refund:<order_id>`` for what the customer paid; every
status change is conditional, so two job runs, or a job and an admin, never act on the
same request twice, and re-running after a crash (between the void and the credit)
finishes the credit exactly once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bson import ObjectId
from bson.errors import InvalidId

from models.shipping import VoidResult
from providers.errors import ProviderError
from services.clock import Clock, utc_now
from services.shipping import CarrierUnavailable, ShippingGateway
from storage.client import Document
from storage.ledger import LedgerRepo
from storage.orders import OrdersRepo
from storage.refunds import AlreadyRequested, RefundsRepo

_LOGGER = logging.getLogger(__name__)

_SEPARATORS = re.compile(r"[\s,;]+")
_TOKEN = re.compile(r"^[A-Za-z0-9-]{4,64}$")
REJECT_REASONS = ("label_already_used", "label_not_found_within_void_period")
ACTIVE = ("requested", "voiding", "approved", "needs_review")


class RefundNotices(Protocol):
    async def refund_credited(self, refund: Document, balance_cents: int) -> None: ...

    async def refund_rejected(self, refund: Document) -> None: ...

    async def refunds_requested(self, refunds: list[Document]) -> None: ...

    async def refund_needs_review(self, refund: Document) -> None: ...


@dataclass(frozen=True)
class RefundConfig:
    min_age: timedelta
    max_age: timedelta
    max_numbers: int
    max_attempts: int
    retry_base: timedelta
    voiding_lease: timedelta
    batch_limit: int


@dataclass(frozen=True)
class Verdict:
    """``verdict``: accepted, not_found, not_yours, not_purchased, already_requested,
    already_refunded, too_recent, too_old, invalid."""

    number: str
    verdict: str
    amount_cents: int = 0


def split_numbers(text: str) -> list[str]:
    """Tracking numbers (or label ids) from a paste; duplicates count once, order kept."""
    seen: dict[str, None] = {}
    for token in _SEPARATORS.split(text or ""):
        token = token.strip()
        if token:
            seen.setdefault(token, None)
    return list(seen)


class RefundService:
    def __init__(
        self,
        refunds: RefundsRepo,
        orders: OrdersRepo,
        ledger: LedgerRepo,
        gateway: ShippingGateway,
        notices: RefundNotices,
        config: RefundConfig,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._refunds = refunds
        self._orders = orders
        self._ledger = ledger
        self._gateway = gateway
        self._notices = notices
        self._config = config
        self._clock = clock

    @property
    def config(self) -> RefundConfig:
        return self._config

    # -- customer requests ---------------------------------------------------------------

    async def request_many(self, user_id: int, text: str) -> list[Verdict]:
        numbers = split_numbers(text)
        if len(numbers) > self._config.max_numbers:
            raise ValueError("too_many")
        return [await self._request_one(user_id, number) for number in numbers]

    async def request_for_order(self, user_id: int, order_id: str) -> Verdict:
        try:
            order = await self._orders.get(ObjectId(order_id))
        except (InvalidId, TypeError):
            order = None
        if order is None or order["user_id"] != user_id:
            return Verdict(order_id, "not_found")
        return await self._judge(user_id, str(order.get("tracking_number") or order_id), order)

    async def _request_one(self, user_id: int, number: str) -> Verdict:
        if not _TOKEN.match(number):
            return Verdict(number[:64], "invalid")
        order = await self._orders.by_tracking(number) or await self._orders.by_label(number)
        if order is None:
            return Verdict(number, "not_found")
        if order["user_id"] != user_id:
            # Said as plainly as "not found" would leak that the number exists.
            return Verdict(number, "not_yours")
        return await self._judge(user_id, number, order)

    async def _judge(self, user_id: int, number: str, order: Document) -> Verdict:
        if order["status"] == "refunded":
            return Verdict(number, "already_refunded")
        if order["status"] != "purchased":
            return Verdict(number, "not_purchased")
        existing = await self._refunds.by_order(order["_id"])
        if existing is not None:
            if existing["status"] == "credited":
                return Verdict(number, "already_refunded")
            return Verdict(number, "already_requested")
        now = self._clock()
        purchased_at: datetime = order.get("purchased_at") or order["created_at"]
        age = now - purchased_at
        if age < self._config.min_age:
            return Verdict(number, "too_recent")
        if age > self._config.max_age:
            return Verdict(number, "too_old")
        amount = int(order["price_cents"])
        try:
            await self._refunds.create(
                {
                    "order_id": order["_id"],
                    "user_id": user_id,
                    "tracking_number": order.get("tracking_number"),
                    "label_id": order.get("label_id"),
                    "api_mode": order.get("api_mode", "test"),
                    "amount_cents": amount,
                    "status": "requested",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "announced_at": None,
                    "created_at": now,
                    "updated_at": now,
                    "history": [{"status": "requested", "at": now}],
                }
            )
        except AlreadyRequested:
            return Verdict(number, "already_requested")
        return Verdict(number, "accepted", amount)

    async def for_user(self, user_id: int) -> list[Document]:
        return await self._refunds.for_user(user_id, limit=30)

    # -- the job -----------------------------------------------------------------------

    async def process_due(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        now = self._clock()
        announced = await self._refunds.claim_unannounced(now=now, limit=self._config.batch_limit)
        if announced:
            await self._notices.refunds_requested(announced)
        due = await self._refunds.due(
            now=now,
            lease_expired_before=now - self._config.voiding_lease,
            limit=self._config.batch_limit,
        )
        for refund in due:
            outcome = await self._process(refund)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    async def _process(self, refund: Document) -> str:
        if refund["status"] == "approved":
            return await self._credit(refund)
        now = self._clock()
        claimed = await self._refunds.transition(
            refund["_id"],
            from_statuses=[refund["status"]],
            to_status="voiding",
            now=now,
            fields={"voiding_at": now},
            inc={"attempts": 1},
            extra_filter={"updated_at": refund["updated_at"]},
        )
        if claimed is None:
            return "taken"  # another run or an admin got there first
        try:
            result = await self._gateway.void(str(claimed["api_mode"]), str(claimed["label_id"]))
        except (ProviderError, CarrierUnavailable) as exc:
            return await self._retry_or_review(claimed, f"carrier error: {type(exc).__name__}")
        return await self._on_void(claimed, result)

    async def _on_void(self, refund: Document, result: VoidResult) -> str:
        now = self._clock()
        if result.is_voided:
            approved = await self._refunds.transition(
                refund["_id"],
                from_statuses=["voiding"],
                to_status="approved",
                now=now,
                fields={"provider_status": result.reason_code or "approved"},
            )
            return await self._credit(approved) if approved else "taken"
        if result.reason_code in REJECT_REASONS:
            rejected = await self._refunds.transition(
                refund["_id"],
                from_statuses=["voiding"],
                to_status="rejected",
                now=now,
                fields={"reason": result.reason_code, "provider_status": result.reason_code},
            )
            if rejected is not None:
                await self._notices.refund_rejected(rejected)
                return "rejected"
            return "taken"
        return await self._retry_or_review(refund, f"void not approved: {result.reason_code}")

    async def _retry_or_review(self, refund: Document, error: str) -> str:
        now = self._clock()
        if int(refund.get("attempts", 0)) >= self._config.max_attempts:
            review = await self._refunds.transition(
                refund["_id"],
                from_statuses=["voiding"],
                to_status="needs_review",
                now=now,
                fields={"last_error": error},
            )
            if review is not None:
                await self._notices.refund_needs_review(review)
            return "needs_review"
        delay = self._config.retry_base * 2 ** max(int(refund.get("attempts", 1)) - 1, 0)
        await self._refunds.transition(
            refund["_id"],
            from_statuses=["voiding"],
            to_status="requested",
            now=now,
            fields={"last_error": error, "next_attempt_at": now + delay},
        )
        return "retry"

    async def _credit(self, refund: Document) -> str:
        """approved → the ledger credit (once, by key) → credited → order refunded."""
        now = self._clock()
        order_id = refund["order_id"]
        result = await self._ledger.apply(
            user_id=refund["user_id"],
            amount_cents=int(refund["amount_cents"]),
            kind="refund",
            key=f"refund:{order_id}",
            now=now,
            meta={"refund_id": str(refund["_id"]), "order_id": str(order_id)},
        )
        credited = await self._refunds.transition(
            refund["_id"],
            from_statuses=["approved"],
            to_status="credited",
            now=now,
            fields={"credited_at": now},
        )
        await self._orders.transition(
            order_id,
            from_status="purchased",
            to_status="refunded",
            now=now,
            fields={"refunded_at": now},
        )
        if credited is not None:
            await self._notices.refund_credited(credited, result.balance_cents)
        return "credited"

    # -- admin -------------------------------------------------------------------------

    async def list_for_review(self) -> list[Document]:
        return await self._refunds.by_status(["needs_review", "requested"], limit=30)

    async def get(self, refund_id: str) -> Document | None:
        try:
            return await self._refunds.get(ObjectId(refund_id))
        except (InvalidId, TypeError):
            return None

    async def approve(self, refund_id: str) -> tuple[str, Document | None]:
        """Admin approval credits the customer (once) without asking the carrier."""
        refund = await self.get(refund_id)
        if refund is None:
            return "not_found", None
        approved = await self._refunds.transition(
            refund["_id"],
            from_statuses=["requested", "needs_review"],
            to_status="approved",
            now=self._clock(),
            fields={"approved_by_admin": True},
        )
        if approved is None:
            return f"not_allowed:{refund['status']}", refund
        await self._credit(approved)
        return "credited", await self._refunds.get(refund["_id"])

    async def reject(self, refund_id: str, reason: str) -> tuple[str, Document | None]:
        refund = await self.get(refund_id)
        if refund is None:
            return "not_found", None
        rejected = await self._refunds.transition(
            refund["_id"],
            from_statuses=["requested", "needs_review"],
            to_status="rejected",
            now=self._clock(),
            fields={"reason": reason[:200], "rejected_by_admin": True},
        )
        if rejected is None:
            return f"not_allowed:{refund['status']}", refund
        await self._notices.refund_rejected(rejected)
        return "rejected", rejected

    def now(self) -> datetime:
        return self._clock()
