"""``PollerLease``: gained/lost transitions, fencing, deadlines and two competitors."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from bot.lease import PollerLease, attach_lease, holds_lease, leader_only, lease_of
from storage.client import Mongo
from storage.locks import POLLER_LEASE, LocksRepo
from tests.conftest import YieldingDb


class Clocks:
    """A wall clock and a monotonic clock that move together."""

    def __init__(self) -> None:
        self.wall = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def make(repo: LocksRepo, clocks: Clocks, holder: str) -> PollerLease:
    return PollerLease(
        repo,
        holder=holder,
        lease_seconds=30,
        renew_seconds=5,
        clock=clocks.now,
        monotonic=clocks.monotonic,
    )


async def test_gain_renew_and_takeover_after_expiry(mongo: Mongo) -> None:
    clocks = Clocks()
    repo = LocksRepo(mongo.db)
    a, b = make(repo, clocks, "a"), make(repo, clocks, "b")
    events: list[tuple[str, bool]] = []
    a.add_listener(lambda held: events.append(("a", held)))
    b.add_listener(lambda held: events.append(("b", held)))

    assert await a.step() is True
    assert a.token == 1
    assert await b.step() is False
    assert b.observed is not None and b.observed.holder == "a"
    assert "standby: held by a" in b.describe()

    clocks.advance(5)
    assert await a.step() is True  # renewed
    clocks.advance(5)
    assert await b.step() is False

    # a stops renewing (paused); its local deadline passes before the lease expires.
    # Renewed at +5 s: MongoDB expiry at +35 s, local deadline 5 s earlier (+30 s).
    clocks.advance(21)
    assert a.held is False and a.token is None
    clocks.advance(5)
    assert await b.step() is True
    assert b.token == 2
    # a wakes up: its renewal is refused and it reports the loss.
    assert await a.step() is False
    assert events == [("a", True), ("b", True), ("a", False)]


async def test_renewal_error_loses_the_lease_immediately_and_recovers(mongo: Mongo) -> None:
    clocks = Clocks()
    repo = LocksRepo(mongo.db)
    lease = make(repo, clocks, "a")
    changes: list[bool] = []
    lease.add_listener(changes.append)
    assert await lease.step()
    original = repo.renew

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise AutoReconnect("connection reset")

    repo.renew = broken  # type: ignore[method-assign]
    clocks.advance(5)
    assert await lease.step() is False
    assert changes == [True, False]
    assert "AutoReconnect" in lease.describe()
    repo.renew = original  # type: ignore[method-assign]
    # The lease document is still ours: re-acquired at once with a new fencing token.
    clocks.advance(5)
    assert await lease.step() is True
    assert lease.token == 2 and changes == [True, False, True]


async def test_a_slow_renewal_times_out_before_the_deadline(mongo: Mongo) -> None:
    repo = LocksRepo(mongo.db)
    lease = PollerLease(repo, holder="a", lease_seconds=0.6, renew_seconds=0.2)
    assert await lease.step()

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    repo.renew = hang  # type: ignore[method-assign]
    started = time.monotonic()
    assert await lease.step() is False
    assert time.monotonic() - started < 0.5
    assert not lease.held


async def test_someone_else_taking_the_lease_is_seen_at_the_next_renewal(mongo: Mongo) -> None:
    clocks = Clocks()
    repo = LocksRepo(mongo.db)
    lease = make(repo, clocks, "a")
    assert await lease.step()
    # An operator (or a buggy peer) forces the lease away in MongoDB.
    await mongo.db["locks"].update_one(
        {"_id": POLLER_LEASE}, {"$set": {"holder": "intruder"}, "$inc": {"token": 1}}
    )
    clocks.advance(5)
    assert await lease.step() is False
    assert lease.held is False


async def test_two_leases_compete_exactly_one_holds_and_stop_hands_over(mongo: Mongo) -> None:
    repo = LocksRepo(YieldingDb(mongo.db, seed=3))
    leases = [
        PollerLease(repo, holder=name, lease_seconds=0.9, renew_seconds=0.1) for name in "ab"
    ]
    await asyncio.gather(*(lease.start() for lease in leases))
    try:
        for _ in range(15):  # ~0.3 s of renewals and retries: never two holders
            assert sum(lease.held for lease in leases) == 1
            await asyncio.sleep(0.02)
        leader = next(lease for lease in leases if lease.held)
        standby = next(lease for lease in leases if not lease.held)
        # The leader dies without releasing: the standby takes over after expiry.
        died = time.monotonic()
        await leader.stop(release=False)
        await asyncio.wait_for(standby.wait_held(), timeout=2.0)
        assert time.monotonic() - died <= 0.9 + 0.1 + 0.3
        assert standby.token == 2
        # A clean stop releases: the other instance takes over at its next attempt.
        await leader.start()
        assert not leader.held
        await standby.stop()
        await asyncio.wait_for(leader.wait_held(), timeout=0.5)
        assert leader.token == 3
    finally:
        for lease in leases:
            await lease.stop()


def test_lease_must_outlast_three_renewals() -> None:
    with pytest.raises(ValueError, match="three renew intervals"):
        PollerLease(LocksRepo({"locks": None}), lease_seconds=10, renew_seconds=5)


def test_holds_lease_gate_for_money_jobs() -> None:
    class Data:
        extras: dict[str, Any] = {}

    data = Data()
    assert lease_of(data) is None
    assert holds_lease(data) is True  # no lease configured: a single instance runs jobs
    lease = PollerLease(LocksRepo({"locks": None}), lease_seconds=3, renew_seconds=1)
    attach_lease(data, lease)
    assert lease_of(data) is lease
    assert holds_lease(data) is False


async def test_leader_only_jobs_skip_on_a_standby(mongo: Mongo) -> None:
    class Data:
        extras: dict[str, Any] = {}

    class Context:
        bot_data = Data()

    runs: list[str] = []

    async def reconcile_job(context: Context) -> None:
        runs.append("ran")

    job = leader_only(reconcile_job)
    assert job.__name__ == "reconcile_job"
    await job(Context())  # no lease configured: a single instance runs it
    lease = PollerLease(LocksRepo(mongo.db), holder="a", lease_seconds=3, renew_seconds=1)
    attach_lease(Context.bot_data, lease)
    await job(Context())  # standby: skipped
    assert runs == ["ran"]
    assert await lease.step()
    await job(Context())
    assert runs == ["ran", "ran"]


async def test_outbox_delivery_is_leader_only(mongo: Mongo) -> None:
    """A standby never delivers the outbox: the registered job skips without sending."""
    from telegram.ext import ApplicationBuilder

    from jobs.registry import schedule_jobs
    from tests.conftest import TOKEN, make_settings

    application = ApplicationBuilder().token(TOKEN).build()
    schedule_jobs(application, make_settings(), in_memory=True)
    assert application.job_queue is not None
    [job] = application.job_queue.get_jobs_by_name("outbox:deliver")

    class Data:
        extras: dict[str, Any] = {}

    class Standby:
        bot_data = Data()

        @property
        def bot(self) -> Any:
            raise AssertionError("a standby must not send")

    standby_lease = PollerLease(LocksRepo(mongo.db), lease_seconds=3, renew_seconds=1)
    attach_lease(Standby.bot_data, standby_lease)
    await job.callback(Standby())  # skipped: touches neither the bot nor the outbox
