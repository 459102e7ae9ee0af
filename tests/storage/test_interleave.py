"""The in-memory database suspends at every call, as a real server does."""

from __future__ import annotations

import asyncio

import pytest

from storage.client import Mongo
from storage.interleave import InterleavingDatabase


@pytest.fixture
def memory() -> Mongo:
    return Mongo.memory("interleave")


async def test_memory_mode_is_interleaving(memory: Mongo) -> None:
    assert isinstance(memory.db, InterleavingDatabase)


async def test_concurrent_read_modify_write_interleaves(memory: Mongo) -> None:
    """Two tasks read, then write: with a suspension at each call the second read sees
    the value before the first write, the lost update a real server allows."""
    col = memory.db["counters"]
    await col.insert_one({"_id": 1, "n": 0})

    async def bump() -> None:
        doc = await col.find_one({"_id": 1})
        assert doc is not None
        await col.update_one({"_id": 1}, {"$set": {"n": doc["n"] + 1}})

    await asyncio.gather(bump(), bump())
    doc = await col.find_one({"_id": 1})
    assert doc is not None and doc["n"] == 1


async def test_a_cancellation_lands_between_two_writes(memory: Mongo) -> None:
    col = memory.db["pairs"]
    first_done = asyncio.Event()
    seen: list[str] = []

    def hook(where: str) -> None:
        seen.append(where)
        if where == "pairs.insert_one" and seen.count(where) == 2:
            first_done.set()  # the first insert ran; its after-suspension is now

    memory.db.set_hook(hook)

    async def two_writes() -> None:
        await col.insert_one({"_id": "a"})
        await col.insert_one({"_id": "b"})

    task = asyncio.ensure_future(two_writes())
    await first_done.wait()
    assert task in memory.db.suspended()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [d["_id"] async for d in col.find({})] == ["a"]


async def test_cursors_suspend_and_chain(memory: Mongo) -> None:
    col = memory.db["rows"]
    await col.insert_many([{"_id": i} for i in range(250)])
    before = memory.db.suspensions
    rows = await col.find({}).sort("_id", -1).limit(3).to_list(None)
    assert [r["_id"] for r in rows] == [249, 248, 247]
    assert memory.db.suspensions >= before + 2
    before = memory.db.suspensions
    assert len([r async for r in col.find({})]) == 250
    assert memory.db.suspensions - before == 3  # one per batch of 101 documents
    assert await col.count_documents({}) == 250
