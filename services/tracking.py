"""Tracking of purchased labels: a job follows each label and tells the customer at its
milestones; My labels' Track button shows the latest events.

A check is due at ``tracking_due_at`` (set at purchase). The job takes at most
``max_calls`` due labels a run (ShipStation allows 200 requests a minute), claims each
(the due time moves forward by a lease), asks the carrier (``GET /v2/labels/{id}/track``)
and records the outcome on the order. A failed call backs off (doubling, capped) and a
rate limit (429) or an outage ends the run: no burst of calls into a failing provider, and
nothing is lost, since the next successful check sees every event the carrier has.

Milestones (accepted, in transit, out for delivery, delivered, exception, returned) come
from the events' ``status_code`` and ``status_detail_code``. Codes we do not know give no
notice (logged). Each new milestone is queued in the outbox under the key
``tracking:<order>:<milestone>`` before it is recorded on the order, so a crash or a
replay never sends one twice and never skips one. Several milestones new at once (the job
was late, or the carrier was down) give one notice for the latest of them plus any
essential ones; those passed over are recorded as seen. Non-essential notices (accepted,
in transit, out for delivery) respect ``/notifications off``.

The first scan makes the label used (``first_scan_at``): refunds are refused from then on
(``RefundService``). Tracking ends at delivered or returned, or ``max_age`` after purchase.
Labels bought before tracking existed (no ``tracking_due_at``) are adopted by the first run
of each process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bson import ObjectId
from bson.errors import InvalidId

from models.shipping import TrackingEvent, TrackingInfo
from providers.errors import ProviderError, ProviderRateLimited, ProviderUnavailable
from services.clock import Clock, utc_now
from services.shipping import CarrierUnavailable, ShippingGateway
from storage.client import Document
from storage.orders import OrdersRepo

_LOGGER = logging.getLogger(__name__)

MILESTONES = ("accepted", "in_transit", "out_for_delivery", "delivered", "exception", "returned")
ESSENTIAL = frozenset({"delivered", "exception", "returned"})
FINAL = frozenset({"delivered", "returned"})
# v2 status codes that mean the carrier has not scanned the parcel yet.
_NOT_SCANNED = frozenset({"UN", "NY"})
# Known codes that are a scan but no milestone of their own (a delivery attempt).
_SCAN_ONLY = frozenset({"AT"})


class TrackingNotices(Protocol):
    async def tracking_milestone(
        self, order: Document, milestone: str, event: TrackingEvent | None
    ) -> None: ...


class NotificationPrefs(Protocol):
    async def notifications_enabled(self, user_id: int) -> bool: ...


@dataclass(frozen=True)
class TrackingConfig:
    interval: timedelta
    retry_base: timedelta
    retry_max: timedelta
    max_age: timedelta
    max_calls: int
    claim_lease: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class TrackingView:
    """What the Track button shows: live ``info``, or None (the carrier did not answer)
    with the last status recorded on the order."""

    order: Document
    info: TrackingInfo | None


def milestone_of(event: TrackingEvent) -> str | None:
    """The milestone an event reaches; None for no milestone (unknown codes are logged)."""
    code = (event.status_code or "").upper()
    detail = (event.status_detail_code or "").upper()
    if detail == "OUT_FOR_DELIVERY":
        return "out_for_delivery"
    if "RETURN" in detail and code in ("EX", "DE", "IT"):
        return "returned"
    known = {"AC": "accepted", "IT": "in_transit", "DE": "delivered", "SP": "delivered",
             "EX": "exception"}
    if code in known:
        return known[code]
    if code not in _NOT_SCANNED and code not in _SCAN_ONLY:
        _LOGGER.info("tracking status without a milestone: status_code=%s", code or "-")
    return None


def is_scan(event: TrackingEvent) -> bool:
    code = (event.status_code or "").upper()
    return code in _SCAN_ONLY or (code not in _NOT_SCANNED and milestone_of(event) is not None)


def _events(info: TrackingInfo) -> list[TrackingEvent]:
    """Events oldest first; the top-level status counts as an event when there are none."""
    events = list(info.events)
    if not events and info.status_code:
        events = [
            TrackingEvent(
                occurred_at=None,
                status_code=info.status_code,
                status_detail_code=info.status_detail_code,
                status_description=info.status_description,
            )
        ]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(events, key=lambda e: e.occurred_at or far)


class TrackingService:
    def __init__(
        self,
        orders: OrdersRepo,
        gateway: ShippingGateway,
        notices: TrackingNotices,
        prefs: NotificationPrefs,
        config: TrackingConfig,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._orders = orders
        self._gateway = gateway
        self._notices = notices
        self._prefs = prefs
        self._config = config
        self._clock = clock
        self._adopted = False

    # -- the job -----------------------------------------------------------------------

    async def check_due(self) -> dict[str, int]:
        """One run: at most ``max_calls`` carrier calls; stops at a rate limit or outage."""
        counts: dict[str, int] = {}
        now = self._clock()
        if not self._adopted:
            # Once per process: labels bought before tracking existed join the queue.
            while await self._orders.adopt_untracked(
                since=now - self._config.max_age, now=now, limit=500
            ):
                pass
            self._adopted = True
        due = await self._orders.due_for_tracking(now=now, limit=self._config.max_calls)
        for order in due:
            outcome = await self._check(order)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in ("rate_limited", "unavailable"):
                break  # no more calls into a provider that refuses them this run
        return counts

    async def _check(self, order: Document) -> str:
        now = self._clock()
        claimed = await self._orders.claim_tracking(
            order["_id"], due_at=order["tracking_due_at"], until=now + self._config.claim_lease
        )
        if claimed is None:
            return "taken"
        purchased_at: datetime = claimed.get("purchased_at") or claimed["created_at"]
        if now - purchased_at > self._config.max_age:
            await self._orders.record_tracking(
                claimed["_id"], tracking={"ended": "max_age", "checked_at": now}, next_due=None
            )
            return "expired"
        try:
            info = await self._gateway.track(
                str(claimed.get("api_mode", "test")), str(claimed["label_id"])
            )
        except (ProviderError, CarrierUnavailable) as exc:
            return await self._failed(claimed, exc)
        return await self._apply(claimed, info)

    async def _failed(self, order: Document, exc: Exception) -> str:
        now = self._clock()
        failures = int((order.get("tracking") or {}).get("failures", 0)) + 1
        delay = min(self._config.retry_base * 2 ** (failures - 1), self._config.retry_max)
        outcome = "failed"
        if isinstance(exc, ProviderRateLimited):
            outcome = "rate_limited"
            if exc.retry_after:
                delay = max(delay, timedelta(seconds=exc.retry_after))
        elif isinstance(exc, ProviderUnavailable | CarrierUnavailable):
            outcome = "unavailable"
        _LOGGER.warning(
            "tracking check failed: %s (failures=%d, next in %ss)",
            type(exc).__name__, failures, int(delay.total_seconds()),
        )
        await self._orders.record_tracking(
            order["_id"],
            tracking={"failures": failures, "last_error": type(exc).__name__},
            next_due=now + delay,
        )
        return outcome

    async def _apply(self, order: Document, info: TrackingInfo) -> str:
        now = self._clock()
        events = _events(info)
        reached: dict[str, TrackingEvent] = {}
        first_scan: datetime | None = None
        for event in events:
            milestone = milestone_of(event)
            if milestone is not None:
                reached[milestone] = event  # the latest event of each milestone
            if first_scan is None and is_scan(event):
                first_scan = event.occurred_at or now
        sent = set(order.get("tracking_milestones") or [])
        new = [m for m in MILESTONES if m in reached and m not in sent]
        await self._notify(order, new, reached)
        ended = next((m for m in ("returned", "delivered") if m in reached), None)
        latest = events[-1] if events else None
        await self._orders.record_tracking(
            order["_id"],
            tracking={
                "status_code": info.status_code,
                "status_detail_code": info.status_detail_code,
                "status_text": (latest.text if latest else info.status_description) or None,
                "checked_at": now,
                "failures": 0,
                **({"ended": ended} if ended else {}),
            },
            next_due=None if ended else now + self._config.interval,
            milestones=new,
            first_scan_at=first_scan,
        )
        return "ended" if ended else ("notified" if new else "checked")

    async def _notify(
        self, order: Document, new: Sequence[str], reached: dict[str, TrackingEvent]
    ) -> None:
        if not new:
            return
        far = datetime.max.replace(tzinfo=UTC)
        # The latest by time; scans at the same instant by the parcel's order of life.
        newest = max(new, key=lambda m: (reached[m].occurred_at or far, MILESTONES.index(m)))
        wanted = [m for m in new if m in ESSENTIAL or m == newest]
        enabled: bool | None = None
        for milestone in wanted:
            if milestone not in ESSENTIAL:
                if enabled is None:
                    enabled = await self._prefs.notifications_enabled(int(order["user_id"]))
                if not enabled:
                    continue
            await self._notices.tracking_milestone(order, milestone, reached[milestone])

    # -- the Track button --------------------------------------------------------------

    async def for_customer(self, user_id: int, order_id: str) -> TrackingView | None:
        """The customer's own purchased label with live tracking (None: not theirs, not
        found or not purchased). The first scan is recorded at once (no refund then);
        milestone notices stay with the job."""
        try:
            order = await self._orders.get(ObjectId(order_id))
        except (InvalidId, TypeError):
            return None
        if order is None or order["user_id"] != user_id or order["status"] != "purchased":
            return None
        try:
            info = await self._gateway.track(
                str(order.get("api_mode", "test")), str(order["label_id"])
            )
        except (ProviderError, CarrierUnavailable) as exc:
            _LOGGER.warning("tracking for the Track button failed: %s", type(exc).__name__)
            return TrackingView(order, None)
        scans = [e for e in _events(info) if is_scan(e)]
        if scans and order.get("first_scan_at") is None:
            first = scans[0].occurred_at or self._clock()
            await self._orders.mark_first_scan(order["_id"], first)
        return TrackingView(order, info)
