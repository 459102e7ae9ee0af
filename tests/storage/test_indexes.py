"""Index start-up on a database that already has indexes with other options.

Start-up re-creates every index; on a real server an existing index with other options
fails with code 85/86. TTL changes go through ``collMod``; any other conflict stops with
one line naming the index and the command to fix it. The decision (which indexes differ,
and how) is read from ``index_information()`` and runs on mongomock and on a real server
(``MONGO_TEST_URL``); mongomock has no ``collMod``, so there the command is recorded by a
fake ``db.command``.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import ASCENDING, IndexModel
from pymongo.errors import OperationFailure

from storage.client import Mongo
from storage.indexes import (
    IndexConflict,
    IndexOptions,
    ensure_indexes,
    plan_indexes,
)


class RecordingDb:
    """The database with ``command`` replaced by a recorder (mongomock has no collMod)."""

    def __init__(self, db: Any, *, fail: OperationFailure | None = None) -> None:
        self._db = db
        self._fail = fail
        self.commands: list[dict[str, Any]] = []

    def __getitem__(self, name: str) -> Any:
        return self._db[name]

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.commands.append(command)
        if self._fail is not None:
            raise self._fail
        return {"ok": 1.0}


def _server_options(grace: int) -> IndexOptions:
    # The production shape: TTL indexes carry expireAfterSeconds (mongomock then raises
    # the same "already exists with different options" error a server does).
    return IndexOptions(session_purge_grace_seconds=grace, ttl_monitor=True)


def _db_for(mongo: Mongo) -> Any:
    return RecordingDb(mongo.db) if mongo.in_memory else mongo.db


async def test_a_fresh_database_plans_only_creations(mongo: Mongo) -> None:
    plan = await plan_indexes(mongo.db, _server_options(3600))
    assert plan
    assert {change.action for change in plan} == {"create"}
    names = {f"{c.collection}.{c.name}" for c in plan}
    assert {"sessions.expires_at_ttl", "ledger.user_seq_unique"} <= names


async def test_an_unchanged_database_plans_nothing(mongo: Mongo) -> None:
    await ensure_indexes(_db_for(mongo), _server_options(3600))
    assert await plan_indexes(mongo.db, _server_options(3600)) == []


async def test_a_changed_session_grace_is_applied_with_collmod(mongo: Mongo) -> None:
    # The index as an earlier release (or an earlier sessions.purge_grace_seconds) left it.
    await mongo.db["sessions"].create_indexes(
        [IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", expireAfterSeconds=100)]
    )
    plan = await plan_indexes(mongo.db, _server_options(7200))
    [change] = [c for c in plan if c.collection == "sessions"]
    assert (change.action, change.name) == ("collmod", "expires_at_ttl")
    assert (change.current_ttl, change.wanted_ttl) == (100, 7200)

    db = _db_for(mongo)
    await ensure_indexes(db, _server_options(7200))  # no OperationFailure (code 85)
    if isinstance(db, RecordingDb):
        index = {"name": "expires_at_ttl", "expireAfterSeconds": 7200}
        assert db.commands == [{"collMod": "sessions", "index": index}]
    else:
        info = await mongo.db["sessions"].index_information()
        assert info["expires_at_ttl"]["expireAfterSeconds"] == 7200
        assert await plan_indexes(mongo.db, _server_options(7200)) == []


async def test_a_plain_index_that_should_be_ttl_is_converted_with_collmod(mongo: Mongo) -> None:
    await mongo.db["processed_updates"].create_indexes(
        [IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl")]
    )
    plan = await plan_indexes(mongo.db, _server_options(3600))
    [change] = [c for c in plan if c.collection == "processed_updates"]
    assert (change.action, change.current_ttl, change.wanted_ttl) == ("collmod", None, 0)


async def test_another_option_conflict_stops_with_one_line_naming_the_fix(mongo: Mongo) -> None:
    # A non-unique index where this release needs a unique one: no command can flip it
    # safely at start-up, so nothing is changed and the operator is told what to run.
    await mongo.db["payments"].create_indexes(
        [IndexModel([("provider_key", ASCENDING)], name="provider_key_unique")]
    )
    db = _db_for(mongo)
    with pytest.raises(IndexConflict) as caught:
        await ensure_indexes(db, _server_options(3600))
    message = str(caught.value)
    assert "\n" not in message
    assert "payments.provider_key_unique" in message
    assert "unique" in message
    assert 'db.payments.dropIndex("provider_key_unique")' in message
    assert "python -m bot ensure-indexes" in message
    # Nothing was changed: no collMod, no index created elsewhere.
    if isinstance(db, RecordingDb):
        assert db.commands == []
    assert "created_at" not in await mongo.db["users"].index_information()


async def test_a_changed_key_pattern_under_the_same_name_is_a_conflict(mongo: Mongo) -> None:
    await mongo.db["refunds"].create_indexes(
        [IndexModel([("order_id", -1)], name="order_unique", unique=True)]
    )
    with pytest.raises(IndexConflict, match=r"refunds\.order_unique.*keys"):
        await ensure_indexes(_db_for(mongo), _server_options(3600))


async def test_the_same_keys_under_another_name_is_a_conflict(mongo: Mongo) -> None:
    await mongo.db["templates"].create_indexes(
        [IndexModel([("user_id", 1), ("name_key", 1)], name="old_name", unique=True)]
    )
    plan = await plan_indexes(mongo.db, _server_options(3600))
    [change] = [c for c in plan if c.collection == "templates" and c.action != "create"]
    assert change.action == "conflict"
    assert 'db.templates.dropIndex("old_name")' in change.fix


async def test_a_ttl_index_where_none_is_wanted_is_a_conflict(mongo: Mongo) -> None:
    # The in-memory mode plays the TTL monitor itself and wants plain indexes.
    await mongo.db["sessions"].create_indexes(
        [IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", expireAfterSeconds=5)]
    )
    plan = await plan_indexes(mongo.db, IndexOptions(ttl_monitor=False))
    [change] = [c for c in plan if c.collection == "sessions"]
    assert change.action == "conflict"


async def test_a_refused_collmod_stops_with_the_manual_command(mongo: Mongo) -> None:
    await mongo.db["sessions"].create_indexes(
        [IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", expireAfterSeconds=100)]
    )
    db = RecordingDb(mongo.db, fail=OperationFailure("not authorized on shiplabel", code=13))
    with pytest.raises(IndexConflict) as caught:
        await ensure_indexes(db, _server_options(7200))
    message = str(caught.value)
    assert "\n" not in message
    assert "sessions.expires_at_ttl" in message
    assert "not authorized" in message
    assert (
        'db.runCommand({collMod: "sessions", index: {name: "expires_at_ttl", '
        "expireAfterSeconds: 7200}})" in message
    )


async def test_a_server_conflict_the_plan_missed_is_reported_in_one_line() -> None:
    class ConflictingCollection:
        async def index_information(self) -> dict[str, Any]:
            return {"_id_": {"key": [("_id", 1)], "v": 2}}

        async def create_indexes(self, models: list[IndexModel]) -> list[str]:
            raise OperationFailure(
                "Index already exists with a different name: other", code=85
            )

    class Db:
        def __getitem__(self, name: str) -> ConflictingCollection:
            return ConflictingCollection()

        async def command(self, command: dict[str, Any]) -> dict[str, Any]:
            raise AssertionError("no collMod expected")

    with pytest.raises(IndexConflict) as caught:
        await ensure_indexes(Db(), _server_options(3600))
    message = str(caught.value)
    assert "\n" not in message
    assert "code 85" in message
    assert "getIndexes()" in message
