"""Backup and restore: exact round trip of BSON types, indexes, refusal and integrity."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, ObjectId
from mongomock_motor import AsyncMongoMockClient
from pymongo import ASCENDING, DESCENDING, IndexModel

from bot import __main__ as cli
from bot.backup import (
    MANIFEST,
    BackupError,
    RestoreRefused,
    backup_database,
    restore_database,
    verify_backup,
)
from storage.client import Mongo, MongoOptions

NOW = datetime(2025, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)


def fresh_db(name: str = "restored") -> Any:
    return AsyncMongoMockClient(tz_aware=True)[name]


async def seed(db: Any) -> None:
    await db["users"].insert_many(
        [
            {
                "_id": 100000001,
                "language": "uk",
                "balance_cents": 2500,
                "big": Int64(5),
                "huge": Int64(2**40),  # what a server returns for an int64
                "blocked": False,
                "role": None,
                "created_at": NOW,
                "profile": {"name": "Олена 🚚", "tags": ["a", {"deep": [1, 2.5, NOW]}]},
            },
            {"_id": 100000002, "language": "en", "balance_cents": 0, "created_at": NOW},
        ]
    )
    await db["ledger"].insert_many(
        [
            {
                "_id": ObjectId(),
                "user_id": 100000001,
                "amount_cents": 2500,
                "key": f"topup:oxapay:{i}",
                "rate": Decimal128(Decimal("1.2345")),
                "raw": b"\x00\x01\xff",  # subtype 0 reads back as bytes, as from a server
                "uuid": Binary(b"0123456789abcdef", 4),
                "created_at": NOW + timedelta(seconds=i),
            }
            for i in range(1203)  # more than one insert batch
        ]
    )
    await db["ledger"].create_indexes(
        [
            IndexModel([("key", ASCENDING)], name="key_unique", unique=True),
            IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_time"),
        ]
    )
    await db["sessions"].create_indexes(
        [IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", expireAfterSeconds=60)]
    )  # an empty collection with an index survives too


async def dump(db: Any) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in sorted(await db.list_collection_names()):
        out[name] = [doc async for doc in db[name].find({}).sort("_id", 1)]
    return out


def types_of(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: types_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [types_of(v) for v in value]
    return type(value).__name__


async def test_round_trip_is_exact(tmp_path: Path) -> None:
    source = fresh_db("source")
    await seed(source)
    manifest = await backup_database(source, tmp_path / "b", database="source")
    assert {c.name: c.count for c in manifest.collections} == {
        "ledger": 1203,
        "sessions": 0,
        "users": 2,
    }
    target = fresh_db()
    report = await restore_database(target, tmp_path / "b")
    assert report.documents == {"ledger": 1203, "sessions": 0, "users": 2}
    before, after = await dump(source), await dump(target)
    assert after == before
    assert types_of(after) == types_of(before)
    user = after["users"][0]
    assert type(user["big"]) is Int64 and type(user["balance_cents"]) is int
    assert user["created_at"] == NOW and user["created_at"].utcoffset() == timedelta(0)
    assert isinstance(after["ledger"][0]["rate"], Decimal128)
    indexes = await target["ledger"].index_information()
    assert indexes["key_unique"]["unique"] is True
    assert list(indexes["user_time"]["key"]) == [("user_id", 1), ("created_at", -1)]
    ttl = await target["sessions"].index_information()
    assert ttl["expires_at_ttl"]["expireAfterSeconds"] == 60


async def test_files_are_canonical_extended_json(tmp_path: Path) -> None:
    source = fresh_db("source")
    await seed(source)
    await backup_database(source, tmp_path, database="source")
    first = json.loads((tmp_path / "users.jsonl").read_text().splitlines()[0])
    assert first["_id"] == {"$numberInt": "100000001"}
    assert first["big"] == {"$numberLong": "5"}
    assert first["created_at"] == {"$date": {"$numberLong": str(int(NOW.timestamp() * 1000))}}
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["database"] == "source"
    assert manifest["collections"]["users"]["count"] == 2
    assert len(manifest["collections"]["users"]["sha256"]) == 64
    names = [i["name"] for i in manifest["collections"]["ledger"]["indexes"]]
    assert names == ["key_unique", "user_time"]


async def test_restore_refuses_a_non_empty_database_unless_forced(tmp_path: Path) -> None:
    source = fresh_db("source")
    await seed(source)
    await backup_database(source, tmp_path, database="source")
    target = fresh_db()
    await target["users"].insert_one({"_id": 1, "stray": True})
    await target["other"].insert_one({"_id": 1})
    with pytest.raises(RestoreRefused, match=r"not empty \(other, users\)"):
        await restore_database(target, tmp_path)
    assert await target["ledger"].count_documents({}) == 0  # nothing was written
    await restore_database(target, tmp_path, force=True)
    assert await target["users"].find_one({"_id": 1}) is None  # replaced, not merged
    assert await target["users"].count_documents({}) == 2
    assert await target["other"].count_documents({}) == 1  # not in the backup: untouched


async def test_damaged_backups_are_rejected_before_writing(tmp_path: Path) -> None:
    source = fresh_db("source")
    await seed(source)
    await backup_database(source, tmp_path, database="source")
    path = tmp_path / "users.jsonl"
    path.write_text(path.read_text().replace("Олена", "Olena"))
    with pytest.raises(BackupError, match="checksum mismatch"):
        verify_backup(tmp_path)
    target = fresh_db()
    with pytest.raises(BackupError, match="checksum mismatch"):
        await restore_database(target, tmp_path)
    assert await target.list_collection_names() == []
    (tmp_path / MANIFEST).unlink()
    with pytest.raises(BackupError, match="not a complete backup"):
        verify_backup(tmp_path)


async def test_backup_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        await backup_database(fresh_db(), tmp_path, database="x")


# ------------------------------------------------------------------------ CLI


@pytest.fixture
def shared_client(monkeypatch: pytest.MonkeyPatch) -> Any:
    client = AsyncMongoMockClient(tz_aware=True)

    def connect(url: str, options: MongoOptions) -> Mongo:
        assert url == "mongomock://"
        return Mongo(client, options.database, in_memory=True)

    monkeypatch.setenv("MONGO_URL", "mongomock://")
    monkeypatch.setattr(Mongo, "connect", staticmethod(connect))
    monkeypatch.setattr(cli, "_configure_logging", lambda *a, **k: None)
    return client


async def test_cli_backup_and_restore(
    shared_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(shared_client["shiplabel"])
    out = tmp_path / "backup"
    # The CLI runs its own event loop: call it from a worker thread.
    import asyncio

    code = await asyncio.to_thread(cli.main, ["backup", "--out", str(out)])
    assert code == 0
    assert "backup written to" in capsys.readouterr().out

    code = await asyncio.to_thread(cli.main, ["restore", str(out)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("restore refused: the database is not empty")

    code = await asyncio.to_thread(
        cli.main, ["restore", str(out), "--database", "copy"]
    )
    assert code == 0
    assert "restored 1205 documents into 3 collections" in capsys.readouterr().out
    assert await dump(shared_client["copy"]) == await dump(shared_client["shiplabel"])


def test_cli_restore_of_a_damaged_backup_fails_cleanly(
    shared_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["restore", str(tmp_path)])
    assert code == 1
    assert capsys.readouterr().err.startswith("restore failed: ")
