"""``/stats``: business figures for a period, from MongoDB aggregations (``storage/stats``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.clock import Clock, utc_now
from storage.payments import PaymentsRepo
from storage.stats import OrderFigures, PaymentFigures, RefundFigures, StatsRepo, UserFigures

PERIODS = ("today", "7d", "30d", "all")
DEFAULT_PERIOD = "today"


@dataclass(frozen=True)
class StatsReport:
    period: str
    since: datetime | None
    users: UserFigures
    orders: OrderFigures
    payments: PaymentFigures
    refunds: RefundFigures
    callbacks_total: int
    callbacks_duplicate: int

    @property
    def duplicate_ratio(self) -> float | None:
        if not self.callbacks_total:
            return None
        return self.callbacks_duplicate / self.callbacks_total


def period_start(period: str, now: datetime) -> datetime | None:
    """The first instant of the period (UTC); ``None`` for all time."""
    if period == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "7d":
        return now - timedelta(days=7)
    if period == "30d":
        return now - timedelta(days=30)
    if period == "all":
        return None
    raise ValueError(f"unknown period {period!r}")


class StatsService:
    def __init__(
        self, repo: StatsRepo, payments: PaymentsRepo, *, clock: Clock = utc_now
    ) -> None:
        self._repo = repo
        self._payments = payments
        self._clock = clock

    async def report(self, period: str = DEFAULT_PERIOD) -> StatsReport:
        now = self._clock()
        since = period_start(period, now)
        total, duplicates = await self._payments.duplicate_stats()
        return StatsReport(
            period=period,
            since=since,
            users=await self._repo.users_figures(
                since=since, day_ago=now - timedelta(hours=24), week_ago=now - timedelta(days=7)
            ),
            orders=await self._repo.order_figures(since=since),
            payments=await self._repo.payment_figures(since=since),
            refunds=await self._repo.refund_figures(since=since),
            callbacks_total=total,
            callbacks_duplicate=duplicates,
        )
