import asyncio
import io
from datetime import timedelta
from typing import Any

from bot.audit import run_audit
from storage.client import Mongo, MongoOptions
from storage.indexes import IndexOptions
from storage.ledger import LedgerRepo
from storage.repos import Storage
from tests.conftest import FakeClock, YieldingDb


def _storage(mongo: Mongo) -> Storage:
    return Storage(
        "mongomock://",
        MongoOptions(),
        session_ttl=timedelta(minutes=60),
        index_options=IndexOptions(),
        mongo=mongo,
    )


async def test_audit_passes_then_detects_a_hand_made_mismatch(
    mongo: Mongo, clock: FakeClock
) -> None:
    await mongo.db["users"].insert_many(
        [{"_id": 1, "balance_cents": 0}, {"_id": 2, "balance_cents": 0}]
    )
    ledger = LedgerRepo(mongo.db)
    await ledger.apply(user_id=1, amount_cents=700, kind="topup", key="a", now=clock())
    await ledger.apply(user_id=2, amount_cents=300, kind="topup", key="b", now=clock())
    out = io.StringIO()
    assert await run_audit(_storage(mongo), repair=True, out=out) == 0
    assert "2 users checked, 0 mismatches" in out.getvalue()
    await mongo.db["users"].update_one({"_id": 2}, {"$inc": {"balance_cents": 1}})
    out = io.StringIO()
    assert await run_audit(_storage(mongo), repair=True, out=out) == 1
    assert "MISMATCH user 2: balance_cents=301 sum(ledger)=300" in out.getvalue()


async def test_audit_during_live_applies_reports_no_false_mismatch(
    mongo: Mongo, clock: FakeClock
) -> None:
    """The audit runs while money moves (every database call interleaves with the stream of
    applies): it never reports a mismatch that is not there, and still finds a real one."""
    users = [1, 2, 3, 4]
    await mongo.db["users"].insert_many([{"_id": u, "balance_cents": 0} for u in users])
    live = Mongo(mongo.client, mongo.db.name, in_memory=True)
    live.db = YieldingDb(mongo.db, seed=7)
    storage = _storage(live)
    await storage.start()
    ledger = LedgerRepo(live.db)
    for user in users:
        await ledger.apply(user_id=user, amount_cents=1000, kind="x", key=f"s{user}", now=clock())

    async def stream(run: str) -> None:
        for i in range(120):
            user = users[i % len(users)]
            amount = 250 if i % 3 else -100  # credits and debits, never an overdraft
            key = f"{run}:{i}"
            await ledger.apply(user_id=user, amount_cents=amount, kind="x", key=key, now=clock())

    streaming = asyncio.create_task(stream("a"))
    audits = 0
    while not streaming.done():
        out = io.StringIO()
        status = await run_audit(storage, repair=True, out=out)
        assert status == 0, out.getvalue()
        assert "4 users checked, 0 mismatches" in out.getvalue()
        audits += 1
    await streaming
    assert audits >= 3  # the audits really overlapped the stream
    # A real mismatch, made while the stream runs again, is still found.
    await mongo.db["users"].update_one({"_id": 3}, {"$inc": {"balance_cents": 5}})
    streaming = asyncio.create_task(stream("b"))
    out = io.StringIO()
    assert await run_audit(storage, repair=True, out=out) == 1
    await streaming
    assert "MISMATCH user 3:" in out.getvalue() and "difference=5" in out.getvalue()
    assert "1 mismatches" in out.getvalue()


async def test_entries_without_an_account_are_a_mismatch(mongo: Mongo, clock: FakeClock) -> None:
    await mongo.db["users"].insert_one({"_id": 1, "balance_cents": 0})
    ledger = LedgerRepo(mongo.db)
    await ledger.apply(user_id=1, amount_cents=700, kind="topup", key="a", now=clock())
    await mongo.db["ledger"].insert_one(
        {"_id": "orphan", "user_id": 9, "amount_cents": 40, "kind": "x", "seq": 1, "meta": {}}
    )
    out = io.StringIO()
    assert await run_audit(_storage(mongo), repair=True, out=out) == 1
    assert "MISMATCH user 9: balance_cents=0 sum(ledger)=40" in out.getvalue()
    assert "1 users checked, 1 mismatches" in out.getvalue()


class _MovingUsers:
    """A users collection whose ``ledger_seq`` moves between any two reads of user 2."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def find_one(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        doc = await self._inner.find_one(query, *args, **kwargs)
        if isinstance(query, dict) and query.get("_id") == 2:
            await self._inner.update_one({"_id": 2}, {"$inc": {"ledger_seq": 1}})
        return doc


async def test_a_user_whose_ledger_never_holds_still_is_unchecked_not_a_mismatch(
    mongo: Mongo,
) -> None:
    await mongo.db["users"].insert_many(
        [{"_id": 1, "balance_cents": 0}, {"_id": 2, "balance_cents": 0, "ledger_seq": 0}]
    )
    ledger = LedgerRepo(mongo.db)
    ledger.users = _MovingUsers(mongo.db["users"])
    report = await ledger.audit_report(repair=False)
    assert (report.checked, report.mismatches, report.unsettled) == (1, [], [2])
