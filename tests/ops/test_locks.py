"""``LocksRepo``: conditional acquire/renew/release with fencing tokens (injected clock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from storage.client import Mongo
from storage.locks import POLLER_LEASE, LocksRepo
from tests.conftest import YieldingDb

TTL = timedelta(seconds=30)
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_acquire_when_absent_then_refused_while_valid(mongo: Mongo) -> None:
    repo = LocksRepo(mongo.db)
    a = await repo.acquire(POLLER_LEASE, "a", now=at(0), ttl=TTL)
    assert a is not None
    assert (a.holder, a.token) == ("a", 1)
    assert a.expires_at == at(30)
    assert await repo.acquire(POLLER_LEASE, "b", now=at(29), ttl=TTL) is None
    state = await repo.state(POLLER_LEASE)
    assert state is not None and state.holder == "a" and state.active(at(29))


async def test_renew_extends_only_for_the_holder_with_the_same_token(mongo: Mongo) -> None:
    repo = LocksRepo(mongo.db)
    a = await repo.acquire(POLLER_LEASE, "a", now=at(0), ttl=TTL)
    assert a is not None
    renewed = await repo.renew(a, now=at(20), ttl=TTL)
    assert renewed is not None
    assert renewed.token == a.token and renewed.expires_at == at(50)
    # Still valid at 45 s thanks to the renewal: b cannot take it.
    assert await repo.acquire(POLLER_LEASE, "b", now=at(45), ttl=TTL) is None
    forged = type(a)(a.name, "b", a.token, a.expires_at)
    assert await repo.renew(forged, now=at(21), ttl=TTL) is None


async def test_expired_lease_is_taken_and_the_stale_holder_is_fenced(mongo: Mongo) -> None:
    repo = LocksRepo(mongo.db)
    a = await repo.acquire(POLLER_LEASE, "a", now=at(0), ttl=TTL)
    assert a is not None
    b = await repo.acquire(POLLER_LEASE, "b", now=at(30), ttl=TTL)
    assert b is not None and b.token == a.token + 1
    # a wakes up (e.g. after a long pause) and tries to renew: refused, token moved on.
    assert await repo.renew(a, now=at(31), ttl=TTL) is None
    assert await repo.release(a, now=at(31)) is False
    state = await repo.state(POLLER_LEASE)
    assert state is not None and state.holder == "b"
    assert await repo.renew(b, now=at(31), ttl=TTL) is not None


async def test_release_hands_over_at_once_and_tokens_only_grow(mongo: Mongo) -> None:
    repo = LocksRepo(mongo.db)
    tokens = []
    holder = "a"
    for step in range(4):
        lease = await repo.acquire(POLLER_LEASE, holder, now=at(step), ttl=TTL)
        assert lease is not None
        tokens.append(lease.token)
        assert await repo.release(lease, now=at(step))
        holder = "b" if holder == "a" else "a"
    assert tokens == [1, 2, 3, 4]
    state = await repo.state(POLLER_LEASE)
    assert state is not None and state.holder is None and not state.active(at(10))


async def test_the_holder_may_reacquire_its_own_lease_with_a_new_token(mongo: Mongo) -> None:
    repo = LocksRepo(mongo.db)
    first = await repo.acquire(POLLER_LEASE, "a", now=at(0), ttl=TTL)
    again = await repo.acquire(POLLER_LEASE, "a", now=at(1), ttl=TTL)
    assert first is not None and again is not None
    assert again.token == first.token + 1
    assert await repo.renew(first, now=at(2), ttl=TTL) is None  # the old token is dead


async def test_concurrent_acquirers_exactly_one_wins(mongo: Mongo) -> None:
    repo = LocksRepo(YieldingDb(mongo.db, seed=7))
    results = await asyncio.gather(
        *(repo.acquire(POLLER_LEASE, f"h{i}", now=at(0), ttl=TTL) for i in range(8))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].token == 1
