"""One default sender per customer, even when two switches race (unique sparse index)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from storage.client import Mongo
from storage.indexes import IndexOptions, ensure_indexes
from storage.templates import DefaultTaken, TemplatesRepo
from tests.conftest import YieldingDb

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ADDRESS = {"name": "Dana Scully", "city": "New York"}


async def _defaults(repo: TemplatesRepo, user_id: int) -> list[str]:
    return [t["name"] for t in await repo.list(user_id) if "default_key" in t]


async def test_switching_unsets_the_old_default_and_delete_removes_it(mongo: Mongo) -> None:
    await ensure_indexes(mongo.db, IndexOptions(ttl_monitor=False))
    repo = TemplatesRepo(mongo.db)
    home = await repo.create(1, "Home", ADDRESS, now=NOW)
    office = await repo.create(1, "Office", ADDRESS, now=NOW)
    theirs = await repo.create(2, "Theirs", ADDRESS, now=NOW)
    await repo.set_default(2, theirs["_id"])
    assert await repo.set_default(1, theirs["_id"]) is None  # not theirs to mark
    await repo.set_default(1, home["_id"])
    await repo.set_default(1, office["_id"])
    assert await _defaults(repo, 1) == ["Office"] and await _defaults(repo, 2) == ["Theirs"]
    assert await repo.delete(1, office["_id"])
    assert await repo.default(1) is None and await _defaults(repo, 2) == ["Theirs"]


@pytest.mark.parametrize("seed", range(12))
async def test_two_racing_switches_leave_exactly_one_default(mongo: Mongo, seed: int) -> None:
    """Both switches unset, then both set: the unique index lets one win; the loser raises
    ``DefaultTaken`` and changed nothing it claims. Without the index some seeds leave two
    defaults."""
    db = YieldingDb(mongo.db, seed=seed)
    await ensure_indexes(db, IndexOptions(ttl_monitor=False))
    repo = TemplatesRepo(db)
    ids = [(await repo.create(1, name, ADDRESS, now=NOW))["_id"] for name in ("A", "B", "C")]
    await repo.set_default(1, ids[0])
    results = await asyncio.gather(
        repo.set_default(1, ids[1]), repo.set_default(1, ids[2]), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, dict)]
    assert all(isinstance(r, dict | DefaultTaken) for r in results)
    defaults = await _defaults(repo, 1)
    assert len(defaults) == 1
    if len(won) == 1:
        assert defaults == [won[0]["name"]]
