import io
from datetime import timedelta

from bot.audit import run_audit
from storage.client import Mongo, MongoOptions
from storage.indexes import IndexOptions
from storage.ledger import LedgerRepo
from storage.repos import Storage
from tests.conftest import FakeClock


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
