"""Sessions and persistence against mongomock (and real MongoDB with MONGO_TEST_URL)."""

from datetime import timedelta
from typing import Any

from storage.client import Mongo
from storage.indexes import IndexOptions, ensure_indexes, index_models
from storage.persistence import MongoPersistence
from storage.sessions import SessionsRepo
from tests.conftest import FakeClock

TTL = timedelta(minutes=60)


def _options(mongo: Mongo) -> IndexOptions:
    return IndexOptions(session_purge_grace_seconds=3600, ttl_monitor=not mongo.in_memory)


async def _repo(mongo: Mongo) -> SessionsRepo:
    await ensure_indexes(mongo.db, _options(mongo))
    return SessionsRepo(mongo.db, ttl=TTL)


async def test_ensure_indexes_is_idempotent(mongo: Mongo) -> None:
    first = await ensure_indexes(mongo.db, _options(mongo))
    second = await ensure_indexes(mongo.db, _options(mongo))
    assert "sessions.expires_at_ttl" in first
    assert second == []  # nothing left to create or change
    info = await mongo.db["sessions"].index_information()
    assert "expires_at_ttl" in info
    if not mongo.in_memory:
        assert info["expires_at_ttl"]["expireAfterSeconds"] == 3600


def test_ttl_index_definitions() -> None:
    models = index_models(IndexOptions(session_purge_grace_seconds=3600))
    sessions = {m.document["name"]: m.document for m in models["sessions"]}
    assert sessions["expires_at_ttl"]["expireAfterSeconds"] == 3600
    processed = {m.document["name"]: m.document for m in models["processed_updates"]}
    assert processed["expires_at_ttl"]["expireAfterSeconds"] == 0
    plain = index_models(IndexOptions(ttl_monitor=False))
    assert all("expireAfterSeconds" not in m.document for m in plain["sessions"])


async def test_persistence_round_trip_and_expiry(mongo: Mongo, clock: FakeClock) -> None:
    repo = await _repo(mongo)

    async def factory() -> SessionsRepo:
        return repo

    persistence = MongoPersistence(factory, update_interval=1.0, clock=clock)
    await persistence.update_conversation("order", (1, 1), "awaiting_city")
    await persistence.update_conversation("support", (1, 1), "awaiting_topic")
    await persistence.update_conversation("order", (2, 2), "awaiting_name")
    assert await persistence.get_conversations("order") == {
        (1, 1): "awaiting_city",
        (2, 2): "awaiting_name",
    }
    # An expired document is absent on read even though MongoDB has not purged it yet.
    clock.advance(minutes=61)
    assert await persistence.get_conversations("order") == {}
    assert await repo.get((1, 1)) is not None


async def test_one_read_answers_each_conversation_once(mongo: Mongo, clock: FakeClock) -> None:
    repo = await _repo(mongo)
    reads = 0

    async def factory() -> SessionsRepo:
        return repo

    original = repo.load_all_states

    async def counting(*, now: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(now=now)

    repo.load_all_states = counting  # type: ignore[method-assign]
    ticks = [0.0]
    persistence = MongoPersistence(factory, clock=clock, monotonic=lambda: ticks[0])
    await repo.set_state("order", (1, 1), "awaiting_city", now=clock())
    await repo.set_state("support", (1, 1), "awaiting_topic", now=clock())
    # Start-up: PTB asks for each conversation in turn; one read answers all of them.
    assert await persistence.get_conversations("order") == {(1, 1): "awaiting_city"}
    assert await persistence.get_conversations("support") == {(1, 1): "awaiting_topic"}
    assert await persistence.get_conversations("templates") == {}
    assert reads == 1
    # Asking again (a takeover) reads anew and sees what changed meanwhile.
    await repo.set_state("order", (2, 2), "awaiting_name", now=clock())
    assert await persistence.get_conversations("order") == {
        (1, 1): "awaiting_city",
        (2, 2): "awaiting_name",
    }
    assert reads == 2
    # So does a first ask long after the last read.
    await repo.set_state("support", (1, 1), None, now=clock())
    ticks[0] += 60
    assert await persistence.get_conversations("support") == {}
    assert reads == 3


async def test_ending_a_conversation_removes_it(mongo: Mongo, clock: FakeClock) -> None:
    repo = await _repo(mongo)
    await repo.set_state("support", (5, 5), "awaiting_topic", now=clock())
    await repo.set_data((5, 5), "support", {"topic": "order"}, now=clock())
    assert await repo.get_data((5, 5), "support") == {"topic": "order"}
    await repo.set_state("support", (5, 5), None, now=clock())
    assert await repo.get((5, 5)) is None


async def test_touch_extends_and_claims_expired_once(mongo: Mongo, clock: FakeClock) -> None:
    repo = await _repo(mongo)
    await repo.set_state("support", (7, 7), "awaiting_message", now=clock())
    clock.advance(minutes=50)
    assert await repo.touch((7, 7), now=clock()) is None
    clock.advance(minutes=50)  # 100 minutes since start, 50 since the last activity
    assert await repo.touch((7, 7), now=clock()) is None
    clock.advance(minutes=61)
    expired = await repo.touch((7, 7), now=clock())
    assert expired is not None and expired.states == {"support": "awaiting_message"}
    assert await repo.touch((7, 7), now=clock()) is None
    assert await repo.claim_expired(now=clock(), limit=10) == []


async def test_sweeper_claims_each_expired_session_once(mongo: Mongo, clock: FakeClock) -> None:
    repo = await _repo(mongo)
    for user in range(5):
        await repo.set_state("support", (user, user), "awaiting_topic", now=clock())
    clock.advance(minutes=30)
    await repo.set_state("support", (4, 4), "awaiting_message", now=clock())
    clock.advance(minutes=31)
    claimed = await repo.claim_expired(now=clock(), limit=100)
    assert sorted(c.key for c in claimed) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert await repo.claim_expired(now=clock(), limit=100) == []
