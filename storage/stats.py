"""Read-only aggregations for ``/stats``; each ``$match`` leads with indexed fields.

Indexes used (``storage/indexes.py``): ``users.created_at``, ``users.last_seen_at``,
``orders.status_purchased_at``, ``payments.status_paid_at``, ``payments.created_at``,
``refunds.status_credited_at``, ``refunds.created_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.client import Document, aggregate


@dataclass(frozen=True)
class UserFigures:
    total: int
    new: int
    active_24h: int
    active_7d: int


@dataclass(frozen=True)
class OrderFigures:
    purchased: int = 0
    refunded: int = 0
    revenue_cents: int = 0  # price of labels sold (refunded ones are in ``refunds``)
    carrier_cost_cents: int = 0
    avg_completion_seconds: float | None = None

    @property
    def margin_cents(self) -> int:
        return self.revenue_cents - self.carrier_cost_cents


@dataclass(frozen=True)
class PaymentFigures:
    created: int = 0
    paid: int = 0
    open: int = 0
    topups: dict[str, tuple[int, int]] = field(default_factory=dict)  # provider → (n, cents)

    @property
    def success_rate(self) -> float | None:
        decided = self.created - self.open
        return self.paid / decided if decided > 0 else None


@dataclass(frozen=True)
class RefundFigures:
    requested: int = 0
    credited: int = 0
    credited_cents: int = 0


def _since(name: str, since: datetime | None) -> Document:
    return {name: {"$gte": since}} if since is not None else {name: {"$ne": None}}


class StatsRepo:
    def __init__(self, db: Any) -> None:
        self.users = db["users"]
        self.orders = db["orders"]
        self.payments = db["payments"]
        self.refunds = db["refunds"]

    async def users_figures(
        self, *, since: datetime | None, day_ago: datetime, week_ago: datetime
    ) -> UserFigures:
        total = await self.users.count_documents({})
        new = total if since is None else await self.users.count_documents(
            {"created_at": {"$gte": since}}
        )
        return UserFigures(
            total=int(total),
            new=int(new),
            active_24h=int(await self.users.count_documents({"last_seen_at": {"$gte": day_ago}})),
            active_7d=int(await self.users.count_documents({"last_seen_at": {"$gte": week_ago}})),
        )

    async def order_figures(self, *, since: datetime | None) -> OrderFigures:
        rows = await aggregate(
            self.orders,
            [
                {
                    "$match": {
                        "status": {"$in": ["purchased", "refunded"]},
                        **_since("purchased_at", since),
                    }
                },
                {
                    "$group": {
                        "_id": "$status",
                        "n": {"$sum": 1},
                        "revenue": {"$sum": {"$ifNull": ["$price_cents", 0]}},
                        "cost": {"$sum": {"$ifNull": ["$carrier_cost_cents", 0]}},
                        "completion_ms": {
                            "$avg": {"$subtract": ["$purchased_at", "$created_at"]}
                        },
                    }
                },
            ],
        )
        by_status = {row["_id"]: row for row in rows}
        purchased = by_status.get("purchased", {})
        refunded = by_status.get("refunded", {})
        count = int(purchased.get("n", 0)) + int(refunded.get("n", 0))
        weighted = sum(
            float(row["completion_ms"]) * int(row["n"])
            for row in rows
            if row.get("completion_ms") is not None
        )
        return OrderFigures(
            purchased=int(purchased.get("n", 0)),
            refunded=int(refunded.get("n", 0)),
            revenue_cents=int(purchased.get("revenue", 0)),
            carrier_cost_cents=int(purchased.get("cost", 0)),
            avg_completion_seconds=weighted / count / 1000 if count else None,
        )

    async def payment_figures(self, *, since: datetime | None) -> PaymentFigures:
        created_rows = await aggregate(
            self.payments,
            [
                {"$match": _since("created_at", since)},
                {"$group": {"_id": "$status", "n": {"$sum": 1}}},
            ],
        )
        by_status = {str(row["_id"]): int(row["n"]) for row in created_rows}
        topup_rows = await aggregate(
            self.payments,
            [
                {"$match": {"status": {"$in": ["paid", "refunded"]}, **_since("paid_at", since)}},
                {
                    "$group": {
                        "_id": "$provider",
                        "n": {"$sum": 1},
                        "cents": {"$sum": {"$ifNull": ["$credited_cents", 0]}},
                    }
                },
            ],
        )
        return PaymentFigures(
            created=sum(by_status.values()),
            paid=by_status.get("paid", 0) + by_status.get("refunded", 0),
            open=by_status.get("creating", 0) + by_status.get("pending", 0),
            topups={
                str(row["_id"]): (int(row["n"]), int(row["cents"]))
                for row in sorted(topup_rows, key=lambda r: str(r["_id"]))
            },
        )

    async def refund_figures(self, *, since: datetime | None) -> RefundFigures:
        requested = await self.refunds.count_documents(_since("created_at", since))
        rows = await aggregate(
            self.refunds,
            [
                {"$match": {"status": "credited", **_since("credited_at", since)}},
                {"$group": {"_id": None, "n": {"$sum": 1}, "cents": {"$sum": "$amount_cents"}}},
            ],
        )
        row = rows[0] if rows else {}
        return RefundFigures(
            requested=int(requested),
            credited=int(row.get("n", 0)),
            credited_cents=int(row.get("cents", 0)),
        )
