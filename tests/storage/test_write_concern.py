"""Money collections write with the configured write concern (majority by default).

Checked on the PyMongo path without a server: a client created with ``connect=False``
exposes each collection's ``write_concern``. The in-memory database has no replicas; it
keeps working unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.write_concern import WriteConcern

import storage.repos as repos_module
from bot.application import build_storage
from storage.client import Mongo, MongoOptions, money_database
from storage.indexes import IndexOptions
from storage.repos import Storage
from tests.conftest import make_settings


@pytest.fixture
async def offline_client() -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        "mongodb://127.0.0.1:1/", connect=False, serverSelectionTimeoutMS=50
    )
    yield client
    await client.close()


async def _started_offline(
    monkeypatch: pytest.MonkeyPatch,
    client: AsyncMongoClient[dict[str, object]],
    options: MongoOptions,
) -> Storage:
    async def no_indexes(db: object, options: IndexOptions) -> list[str]:
        return []

    async def reachable(self: Mongo) -> bool:
        return True

    # No server here: skip what would talk to one, keep everything that builds the repos.
    monkeypatch.setattr(repos_module, "ensure_indexes", no_indexes)
    monkeypatch.setattr(Mongo, "ping", reachable)
    storage = Storage(
        "mongodb://127.0.0.1:1/",
        options,
        session_ttl=timedelta(minutes=60),
        index_options=IndexOptions(),
        mongo=Mongo(client, options.database, in_memory=False),
    )
    return await storage.start()


async def test_money_collections_write_with_majority(
    monkeypatch: pytest.MonkeyPatch, offline_client: AsyncMongoClient[dict[str, object]]
) -> None:
    storage = await _started_offline(monkeypatch, offline_client, MongoOptions())
    majority = WriteConcern(w="majority", wtimeout=10000)
    money = {
        "ledger": storage.ledger.col,
        "users (balances, via the ledger)": storage.ledger.users,
        "payments": storage.payments.col,
        "payment_events": storage.payments.events,
        "orders": storage.orders.col,
        "refunds": storage.refunds.col,
    }
    for name, collection in money.items():
        assert collection.write_concern == majority, name
    # Everything else keeps the client's (server's) default.
    assert storage.sessions.col.write_concern == WriteConcern()
    assert storage.outbox.col.write_concern == WriteConcern()
    assert storage.users.col.write_concern == WriteConcern()


async def test_the_money_write_concern_is_configurable(
    monkeypatch: pytest.MonkeyPatch, offline_client: AsyncMongoClient[dict[str, object]]
) -> None:
    settings = make_settings(mongo={"money_write_concern": 2, "money_wtimeout_ms": 2500})
    options = build_storage(settings, "mongodb://127.0.0.1:1/")._options  # noqa: SLF001
    assert (options.money_write_concern, options.money_wtimeout_ms) == (2, 2500)
    storage = await _started_offline(monkeypatch, offline_client, options)
    assert storage.ledger.col.write_concern == WriteConcern(w=2, wtimeout=2500)


def test_settings_refuse_an_unacknowledged_money_write_concern() -> None:
    with pytest.raises(ValidationError, match="money_write_concern"):
        make_settings(mongo={"money_write_concern": 0})


async def test_the_in_memory_database_is_used_as_it_is() -> None:
    mongo = Mongo.memory("wc_memory")
    assert money_database(mongo, MongoOptions()) is mongo.db
    storage = Storage(
        "mongomock://",
        MongoOptions(),
        session_ttl=timedelta(minutes=60),
        index_options=IndexOptions(),
        mongo=mongo,
    )
    await storage.start()
    now = datetime.now(UTC)
    await storage.users.register(7, language="en", username=None, first_name="A", now=now)
    result = await storage.ledger.apply(
        user_id=7, amount_cents=500, kind="topup", key="topup:wc:1", now=now
    )
    assert result.balance_cents == 500


async def test_money_writes_are_acknowledged_by_a_real_server(mongo: Mongo) -> None:
    """With MONGO_TEST_URL: a replica set (or a standalone server, where "majority" means
    journaled) acknowledges the money writes."""
    if mongo.in_memory:
        pytest.skip("needs MONGO_TEST_URL (a real MongoDB)")
    storage = Storage(
        "unused",
        MongoOptions(database=mongo.db.name),
        session_ttl=timedelta(minutes=60),
        index_options=IndexOptions(),
        mongo=mongo,
    )
    await storage.start()
    assert storage.ledger.col.write_concern.document["w"] == "majority"
    now = datetime.now(UTC)
    await storage.users.register(8, language="en", username=None, first_name="B", now=now)
    result = await storage.ledger.apply(
        user_id=8, amount_cents=700, kind="topup", key="topup:wc:real", now=now
    )
    assert result.balance_cents == 700
