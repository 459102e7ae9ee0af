"""Refunds of unused labels: eligibility, carrier voids by a job, admin review, one credit.

The credit is the ledger entry ``refund:<order_id>`` for what the customer paid; every
status change is conditional, so two job runs, or a job and an admin, never act on the
same request twice, and re-running after a crash (between the void and the credit)
finishes the credit exactly once.

Nothing is credited before the carrier has voided the label, including an admin's
approval: it asks the carrier for the void (the job retries an outage) and credits only
when the void is approved; a refusal goes back to the admins with the carrier's reason.
Crediting a label that stays usable at the carrier is a separate admin action, confirmed
with a button (``credit_without_void``) and audited, applied once however often pressed.

The refund window ends with the last day (UTC) on which a refund may be asked for
(``window``): ``max_age`` days counted from the purchase day, never later than ``max_age``
after the purchase itself (USPS through Stamps.com refunds labels within 28 days of
printing). The same rules answer My labels' question whether to offer a Refund button
(``offers``), so a button never promises what a request would refuse. A label the
carrier has scanned (``first_scan_at``, recorded by the tracking job) is used: no refund.

Reminders: a label still unused ``remind_days`` before its last day gets one notice with a
"Refund it" button (``rf:one:<order>``, which re-checks every rule when pressed). Customers
who turned on automatic refunds (``/autorefund on``) have their unused labels requested on
the last day, through the same path as their own request (``_judge``): one refund per
order (unique), so a replayed run files nothing twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from bson import ObjectId
from bson.errors import InvalidId

from models.shipping import VoidResult
from providers.errors import ProviderError
from services.audit import AuditService
from services.clock import Clock, utc_now
from services.shipping import CarrierUnavailable, ShippingGateway
from storage.client import Document
from storage.confirmations import ConfirmationsRepo
from storage.ledger import LedgerRepo
from storage.orders import OrdersRepo
from storage.refunds import AlreadyRequested, RefundsRepo

_LOGGER = logging.getLogger(__name__)

_SEPARATORS = re.compile(r"[\s,;]+")
# A tracking number or label id: 4-64 letters, digits or hyphens, at least one digit
# (every carrier's tracking numbers and ShipStation's "se-…" label ids have digits), so a
# word like "hello" is "not a tracking number" rather than "not found".
_TOKEN = re.compile(r"^(?=[A-Za-z-]*[0-9])[A-Za-z0-9-]{4,64}$")
REJECT_REASONS = ("label_already_used", "label_not_found_within_void_period")
ACTIVE = ("requested", "voiding", "approved", "needs_review")
# What an admin may decide on: waiting for the carrier, or back from it for a decision.
DECIDABLE = ("requested", "needs_review")
CREDIT_WITHOUT_VOID = "refund_credit_without_void"


class RefundNotices(Protocol):
    async def refund_credited(self, refund: Document, balance_cents: int) -> None: ...

    async def refund_rejected(self, refund: Document) -> None: ...

    async def refunds_requested(self, refunds: list[Document]) -> None: ...

    async def refund_needs_review(self, refund: Document) -> None: ...

    async def refund_void_refused(self, refund: Document) -> None:
        """An admin-approved void the carrier refused (``void_refusal``): admins decide."""
        ...

    async def refund_reminder(self, order: Document, last_day: date, *, auto: bool) -> None:
        """The label is unused and its refund window ends on ``last_day``."""
        ...

    async def auto_refund_requested(self, order: Document, verdict: str) -> None:
        """The last-day automatic request was filed (``accepted``) or refused (why)."""
        ...


class AutoRefundPrefs(Protocol):
    async def auto_refund_enabled(self, user_id: int) -> bool: ...


@dataclass(frozen=True)
class RefundConfig:
    min_age: timedelta
    max_age: timedelta
    max_numbers: int
    max_attempts: int
    retry_base: timedelta
    voiding_lease: timedelta
    batch_limit: int
    confirm_ttl: timedelta = timedelta(minutes=15)
    remind_days: int = 3


@dataclass(frozen=True)
class Verdict:
    """``verdict``: accepted, not_found, not_yours, not_purchased, already_requested,
    already_refunded, used, too_recent, too_old, invalid."""

    number: str
    verdict: str
    amount_cents: int = 0


@dataclass(frozen=True)
class RefundWindow:
    """When a label may be refunded: from ``opens_at`` to the end of ``last_day`` (UTC)."""

    opens_at: datetime
    last_day: date
    closes_at: datetime  # the first moment it may not: midnight UTC after ``last_day``

    @property
    def first_day(self) -> date:
        """The first whole day (UTC) on which a refund is possible."""
        opens = self.opens_at.astimezone(UTC)
        midnight = opens.hour == opens.minute == opens.second == opens.microsecond == 0
        return opens.date() if midnight else opens.date() + timedelta(days=1)

    def not_yet_open(self, now: datetime) -> bool:
        return now < self.opens_at


@dataclass(frozen=True)
class RefundOffer:
    """What a refund request for a label would get now (``verdict``), and its window."""

    verdict: str
    window: RefundWindow | None

    @property
    def offered(self) -> bool:
        return self.verdict == "accepted"


@dataclass(frozen=True)
class AdminOutcome:
    """``status``: credited (voided, then credited), void_refused (``reason``; nothing
    credited), carrier_unavailable (the job retries the void; nothing credited), rejected,
    credited_without_void, already_applied, confirm (``confirmation`` to show), expired,
    closed, unknown, not_found, not_allowed (``refund`` holds its current status)."""

    status: str
    refund: Document | None = None
    reason: str = ""
    confirmation: Document | None = None


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
        confirmations: ConfirmationsRepo,
        audit: AuditService,
        prefs: AutoRefundPrefs | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._refunds = refunds
        self._orders = orders
        self._ledger = ledger
        self._gateway = gateway
        self._notices = notices
        self._config = config
        self._confirmations = confirmations
        self._audit = audit
        self._prefs = prefs
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

    # -- the rules -----------------------------------------------------------------------

    def window(self, order: Document) -> RefundWindow:
        """The label's refund window: ``max_age`` days counted from the purchase day (UTC),
        so the last day is shown whole and still ends within ``max_age`` of the purchase."""
        purchased_at: datetime = order.get("purchased_at") or order["created_at"]
        first_day = purchased_at.astimezone(UTC).date()
        closes_at = datetime.combine(first_day + self._config.max_age, time(0), tzinfo=UTC)
        return RefundWindow(
            opens_at=purchased_at + self._config.min_age,
            last_day=closes_at.date() - timedelta(days=1),
            closes_at=closes_at,
        )

    def _rule(self, order: Document, existing: Document | None, now: datetime) -> str:
        """The verdict a request for ``order`` gets now, before anything is written."""
        if order["status"] == "refunded":
            return "already_refunded"
        if order["status"] != "purchased":
            return "not_purchased"
        if existing is not None:
            return "already_refunded" if existing["status"] == "credited" else "already_requested"
        if order.get("first_scan_at") is not None:
            return "used"  # the carrier scanned it: a used label is not refundable
        window = self.window(order)
        if now < window.opens_at:
            return "too_recent"
        if now >= window.closes_at:
            return "too_old"
        return "accepted"

    async def offers(self, orders: Sequence[Document]) -> dict[ObjectId, RefundOffer]:
        """For each order: would a refund request be accepted now, and its window."""
        existing = await self._refunds.by_orders([order["_id"] for order in orders])
        now = self._clock()
        offers: dict[ObjectId, RefundOffer] = {}
        for order in orders:
            verdict = self._rule(order, existing.get(order["_id"]), now)
            window = self.window(order) if order["status"] == "purchased" else None
            offers[order["_id"]] = RefundOffer(verdict, window)
        return offers

    async def _judge(self, user_id: int, number: str, order: Document) -> Verdict:
        existing = await self._refunds.by_order(order["_id"])
        now = self._clock()
        verdict = self._rule(order, existing, now)
        if verdict != "accepted":
            return Verdict(number, verdict)
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

    # -- reminders and automatic refunds ---------------------------------------------------

    def _purchased_on(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=UTC)

    async def remind_unused(self) -> int:
        """One reminder per unused label from ``remind_days`` before its last day on."""
        now = self._clock()
        today = now.astimezone(UTC).date()
        last_offset = self._config.max_age.days - 1  # last day = purchase day + this
        start = self._purchased_on(today - timedelta(days=last_offset))
        end = self._purchased_on(
            today - timedelta(days=max(last_offset - self._config.remind_days, 0) - 1)
        )
        orders = await self._orders.unused_purchased_between(
            start=start, end=end, unset="refund_reminded_at", limit=self._config.batch_limit
        )
        offers = await self.offers(orders)
        sent = 0
        for order in orders:
            offer = offers[order["_id"]]
            if offer.offered and offer.window is not None:
                auto = await self._auto_enabled(int(order["user_id"]))
                # Queued (deduplicated by order) before it is marked: a crash in between
                # queues it again under the same key, never twice.
                await self._notices.refund_reminder(order, offer.window.last_day, auto=auto)
                sent += 1
            await self._orders.mark_once(order["_id"], "refund_reminded_at", now=now)
        return sent

    async def auto_refund_last_day(self) -> dict[str, int]:
        """Files the refund of every unused label on its last day for customers who turned
        on automatic refunds; the request goes through the customer's own path."""
        counts: dict[str, int] = {}
        now = self._clock()
        today = now.astimezone(UTC).date()
        day = today - timedelta(days=self._config.max_age.days - 1)
        orders = await self._orders.unused_purchased_between(
            start=self._purchased_on(day),
            end=self._purchased_on(day + timedelta(days=1)),
            unset="auto_refund_checked_at",
            limit=self._config.batch_limit,
        )
        for order in orders:
            user_id = int(order["user_id"])
            if await self._auto_enabled(user_id):
                number = str(order.get("tracking_number") or order["_id"])
                verdict = await self._judge(user_id, number, order)
                if verdict.verdict in ("accepted", "used"):
                    await self._notices.auto_refund_requested(order, verdict.verdict)
                counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
            await self._orders.mark_once(order["_id"], "auto_refund_checked_at", now=now)
        return counts

    async def _auto_enabled(self, user_id: int) -> bool:
        return self._prefs is not None and await self._prefs.auto_refund_enabled(user_id)

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
        return await self._on_void(claimed, result, tell_admins=True)

    async def _on_void(self, refund: Document, result: VoidResult, *, tell_admins: bool) -> str:
        now = self._clock()
        if result.is_voided:
            approved = await self._refunds.transition(
                refund["_id"],
                from_statuses=["voiding"],
                to_status="approved",
                now=now,
                fields={"provider_status": result.reason_code or "approved", "voided_at": now},
            )
            return await self._credit(approved) if approved else "taken"
        reason = result.reason_code or "unknown"
        if refund.get("admin_approved_by") is not None:
            # An admin asked for this refund: the carrier's answer goes back to the admins,
            # who reject it or credit without the void; nothing is credited here.
            review = await self._refunds.transition(
                refund["_id"],
                from_statuses=["voiding"],
                to_status="needs_review",
                now=now,
                fields={
                    "void_refusal": reason,
                    "provider_status": reason,
                    "last_error": f"void refused: {reason}",
                },
            )
            if review is None:
                return "taken"
            if tell_admins:
                await self._notices.refund_void_refused(review)
            return "void_refused"
        if reason in REJECT_REASONS:
            rejected = await self._refunds.transition(
                refund["_id"],
                from_statuses=["voiding"],
                to_status="rejected",
                now=now,
                fields={"reason": reason, "provider_status": reason},
            )
            if rejected is not None:
                await self._notices.refund_rejected(rejected)
                return "rejected"
            return "taken"
        return await self._retry_or_review(refund, f"void not approved: {reason}")

    async def _retry_or_review(self, refund: Document, error: str) -> str:
        if int(refund.get("attempts", 0)) < self._config.max_attempts:
            return await self._retry(refund, error)
        review = await self._refunds.transition(
            refund["_id"],
            from_statuses=["voiding"],
            to_status="needs_review",
            now=self._clock(),
            fields={"last_error": error},
        )
        if review is not None:
            await self._notices.refund_needs_review(review)
        return "needs_review"

    async def _retry(self, refund: Document, error: str) -> str:
        now = self._clock()
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
        await self._orders.stop_tracking(order_id)  # a voided label has nothing to follow
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

    async def approve(self, actor: int, refund_id: str) -> AdminOutcome:
        """The admin's approval asks the carrier to void the label now; the customer is
        credited only when the carrier approves. A refusal comes back with its reason (the
        request waits in ``needs_review``); an outage is retried by the job."""
        refund = await self.get(refund_id)
        if refund is None:
            return AdminOutcome("not_found")
        now = self._clock()
        claimed = await self._refunds.transition(
            refund["_id"],
            from_statuses=DECIDABLE,
            to_status="voiding",
            now=now,
            # A fresh decision: the job gets its full number of attempts again.
            fields={
                "voiding_at": now,
                "attempts": 1,
                "admin_approved_by": actor,
                "admin_approved_at": now,
            },
        )
        if claimed is None:
            return AdminOutcome("not_allowed", refund)
        await self._audit.record(
            actor,
            "refund.approve",
            f"refund:{refund_id}",
            before={"status": refund["status"]},
            after={"status": "voiding"},
            key=f"refund-approve:{refund_id}:{len(claimed.get('history') or [])}",
        )
        try:
            result = await self._gateway.void(str(claimed["api_mode"]), str(claimed["label_id"]))
        except (ProviderError, CarrierUnavailable) as exc:
            # Never credited on an outage, never sent to review by it: the job retries.
            await self._retry(claimed, f"carrier error: {type(exc).__name__}")
            return AdminOutcome("carrier_unavailable", await self._refunds.get(refund["_id"]))
        # The approving admin is answered here, with the carrier's reason.
        outcome = await self._on_void(claimed, result, tell_admins=False)
        after = await self._refunds.get(refund["_id"])
        if outcome == "credited":
            return AdminOutcome("credited", after)
        if outcome == "void_refused":
            return AdminOutcome("void_refused", after, reason=result.reason_code or "unknown")
        if outcome == "retry":
            return AdminOutcome("carrier_unavailable", after)
        return AdminOutcome("not_allowed", after)

    async def reject(self, actor: int, refund_id: str, reason: str) -> AdminOutcome:
        refund = await self.get(refund_id)
        if refund is None:
            return AdminOutcome("not_found")
        rejected = await self._refunds.transition(
            refund["_id"],
            from_statuses=DECIDABLE,
            to_status="rejected",
            now=self._clock(),
            fields={"reason": reason[:200], "rejected_by_admin": True},
        )
        if rejected is None:
            return AdminOutcome("not_allowed", refund)
        await self._audit.record(
            actor,
            "refund.reject",
            f"refund:{refund_id}",
            before={"status": refund["status"]},
            after={"status": "rejected", "reason": rejected.get("reason")},
            key=f"refund-reject:{refund_id}",
        )
        await self._notices.refund_rejected(rejected)
        return AdminOutcome("rejected", rejected)

    async def prepare_credit_without_void(self, actor: int, refund_id: str) -> AdminOutcome:
        """Writes the confirmation its button carries; nothing moves until it is pressed."""
        refund = await self.get(refund_id)
        if refund is None:
            return AdminOutcome("not_found")
        if refund["status"] not in DECIDABLE:
            return AdminOutcome("not_allowed", refund)
        now = self._clock()
        confirmation = await self._confirmations.create(
            kind=CREDIT_WITHOUT_VOID,
            actor=actor,
            payload={"refund_id": str(refund["_id"])},
            now=now,
            expires_at=now + self._config.confirm_ttl,
        )
        return AdminOutcome("confirm", refund, confirmation=confirmation)

    async def credit_without_void(self, actor: int, confirmation_id: str) -> AdminOutcome:
        """Credits the customer although the label was not voided: once per refund, however
        often (or by however many admins) the confirmation is pressed, and audited.

        Order: the request ``approved`` (marked with this confirmation) → the credit (keyed)
        → the audit entry (keyed by the confirmation) → the confirmation closed. Pressing
        again after a crash finishes the same steps; the job also credits ``approved``."""
        try:
            doc = await self._confirmations.get(ObjectId(confirmation_id))
        except (InvalidId, TypeError):
            doc = None
        if doc is None or doc["kind"] != CREDIT_WITHOUT_VOID:
            return AdminOutcome("unknown")
        refund = await self.get(str(doc["payload"]["refund_id"]))
        if doc["status"] == "done":
            return AdminOutcome("already_applied", refund, confirmation=doc)
        if doc["status"] != "pending":
            return AdminOutcome("closed", refund, confirmation=doc)
        now = self._clock()
        if doc["expires_at"] <= now:
            return AdminOutcome("expired", refund, confirmation=doc)
        if refund is None:
            return AdminOutcome("not_found", confirmation=doc)
        cid = str(doc["_id"])
        moved = await self._refunds.transition(
            refund["_id"],
            from_statuses=DECIDABLE,
            to_status="approved",
            now=now,
            fields={
                "credited_without_void": True,
                "credit_confirmation_id": cid,
                "credit_before_status": refund["status"],
                "approved_by": actor,
            },
        )
        if moved is None:
            moved = await self._refunds.get(refund["_id"])
            if moved is None or moved.get("credit_confirmation_id") != cid:
                # Voided, rejected or credited meanwhile: this confirmation is void.
                await self._confirmations.close(doc["_id"], status="refused", by=actor, now=now)
                return AdminOutcome("not_allowed", moved or refund, confirmation=doc)
            # This confirmation moved it before a crash: finish the same steps.
        if moved["status"] == "approved":
            await self._credit(moved)
        await self._audit.record(
            actor,
            "refund.credit_without_void",
            f"refund:{refund['_id']}",
            before={"status": moved.get("credit_before_status")},
            after={
                "status": "credited",
                "amount_cents": int(refund["amount_cents"]),
                "label_voided": False,
            },
            key=f"refund-credit:{cid}",
        )
        closed = await self._confirmations.close(doc["_id"], status="done", by=actor, now=now)
        status = "credited_without_void" if closed is not None else "already_applied"
        return AdminOutcome(status, await self._refunds.get(refund["_id"]), confirmation=doc)

    async def cancel_credit_without_void(self, actor: int, confirmation_id: str) -> bool:
        try:
            doc = await self._confirmations.get(ObjectId(confirmation_id))
        except (InvalidId, TypeError):
            return False
        if doc is None or doc["kind"] != CREDIT_WITHOUT_VOID:
            return False
        now = self._clock()
        closed = await self._confirmations.close(doc["_id"], status="cancelled", by=actor, now=now)
        return closed is not None

    def now(self) -> datetime:
        return self._clock()
