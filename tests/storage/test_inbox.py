"""The inbox of fetched updates: a replay never re-handles an old update."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from telegram import Update

from bot.inbox import Inbox
from services.sessions import SessionService
from storage.client import Mongo
from storage.inbox import InboxRepo
from storage.indexes import IndexOptions, ensure_indexes, index_models
from storage.processed_updates import ProcessedUpdatesRepo
from storage.sessions import SessionsRepo
from tests.conftest import FakeClock

RETENTION = timedelta(hours=24)


def _batch(*update_ids: int) -> bytes:
    result = [
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 1,
                "chat": {"id": 5, "type": "private"},
                "from": {"id": 5, "is_bot": False, "first_name": "A"},
                "text": "hi",
            },
        }
        for update_id in update_ids
    ]
    return json.dumps({"ok": True, "result": result}).encode()


class _App:
    """What ``Inbox.replay`` needs of the application."""

    def __init__(self) -> None:
        self.update_queue: asyncio.Queue[object] = asyncio.Queue()
        self.bot = None

    def queued(self) -> list[int]:
        ids = []
        while not self.update_queue.empty():
            update = self.update_queue.get_nowait()
            assert isinstance(update, Update)
            ids.append(update.update_id)
        return ids


async def _stored(mongo: Mongo) -> list[int]:
    return sorted([doc["_id"] async for doc in mongo.db["inbox"].find({})])


async def test_ids_whose_delete_failed_are_kept_and_retried(
    mongo: Mongo, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = InboxRepo(mongo.db)
    inbox = Inbox(repo, retention=RETENTION, clock=clock)
    await inbox.store_batch(_batch(1, 2, 3))
    inbox.done(Update(1))
    inbox.done(Update(2))
    delete = repo.delete
    failures = 2

    async def flaky_delete(ids: Any) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("primary stepped down")
        await delete(ids)

    monkeypatch.setattr(repo, "delete", flaky_delete)
    with pytest.raises(ConnectionError):
        await inbox.flush()
    inbox.done(Update(3))
    await inbox.stop()  # its last flush fails too: logged, not raised, ids kept
    assert await _stored(mongo) == [1, 2, 3]
    await inbox.flush()
    assert await _stored(mongo) == []


async def test_inbox_documents_expire_with_the_processed_updates_retention(
    mongo: Mongo, clock: FakeClock
) -> None:
    models = {m.document["name"]: m.document for m in index_models(IndexOptions())["inbox"]}
    assert models["expires_at_ttl"]["key"] == {"expires_at": 1}
    assert models["expires_at_ttl"]["expireAfterSeconds"] == 0
    await ensure_indexes(mongo.db, IndexOptions(ttl_monitor=not mongo.in_memory))
    assert "expires_at_ttl" in await mongo.db["inbox"].index_information()
    repo = InboxRepo(mongo.db)
    await Inbox(repo, retention=RETENTION, clock=clock).store_batch(_batch(1))
    doc = await mongo.db["inbox"].find_one({"_id": 1})
    assert doc is not None
    assert doc["expires_at"] - doc["received_at"] == RETENTION
    # The in-memory database has no TTL monitor: the purge job plays it, with the same
    # retention as for processed_updates.
    service = SessionService(
        SessionsRepo(mongo.db, ttl=timedelta(minutes=60)),
        ProcessedUpdatesRepo(mongo.db),
        repo,
        processed_ttl=RETENTION,
        clock=clock,
    )
    clock.advance(hours=23)
    await service.purge_expired(grace=timedelta(0))
    assert await _stored(mongo) == [1]
    clock.advance(hours=1)
    await service.purge_expired(grace=timedelta(0))
    assert await _stored(mongo) == []


async def test_a_replay_skips_entries_older_than_the_retention(
    mongo: Mongo, clock: FakeClock
) -> None:
    repo = InboxRepo(mongo.db)
    inbox = Inbox(repo, retention=RETENTION, clock=clock)
    await inbox.store_batch(_batch(1, 2))
    # An entry stored before entries carried expires_at.
    await mongo.db["inbox"].insert_one(
        {"_id": 0, "update": {"update_id": 0}, "received_at": clock() - timedelta(hours=12)}
    )
    clock.advance(hours=13)
    await inbox.store_batch(_batch(3))
    app = _App()
    # Update 0 is 25 h old, older than the retention (its claim may be gone): skipped
    # and deleted.
    assert await inbox.replay(app) == 3
    assert app.queued() == [1, 2, 3]
    assert await _stored(mongo) == [1, 2, 3]
    clock.advance(hours=11)
    assert await inbox.replay(app) == 1
    assert app.queued() == [3]
    assert await _stored(mongo) == [3]
