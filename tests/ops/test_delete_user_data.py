"""``python -m bot delete-user-data``: the operator's path to the same deletion."""

from __future__ import annotations

import io

from bot.application import build_storage
from bot.privacy_cli import run_deletion
from storage.client import Mongo
from tests.conftest import OWNER_ID, FakeClock, make_settings


async def _seed(mongo: Mongo, clock: FakeClock) -> None:
    db = mongo.db
    await db["users"].insert_one(
        {"_id": 55, "username": "jane", "first_name": "Jane", "language": "en",
         "balance_cents": 0, "ledger_seq": 0, "created_at": clock()}
    )
    await db["templates"].insert_one(
        {"user_id": 55, "name": "Home", "name_key": "home",
         "address": {"name": "Jane", "phone": "+12125550123"}}
    )
    await db["parcel_presets"].insert_one(
        {"user_id": 55, "name": "Mom's meds", "name_key": "mom's meds",
         "parcel": {"weight_oz": 16, "length_in": "6", "width_in": "6", "height_in": "6"}}
    )


async def test_report_only_then_delete_once(mongo: Mongo, clock: FakeClock) -> None:
    settings = make_settings()
    await _seed(mongo, clock)
    out = io.StringIO()
    storage = build_storage(settings, "mongomock://", client=mongo)
    assert await run_deletion(settings, storage, 55, confirm=False, clock=clock, out=out) == 0
    assert "would delete user 55: 1 templates" in out.getvalue()
    assert await mongo.db["templates"].count_documents({}) == 1

    out = io.StringIO()
    storage = build_storage(settings, "mongomock://", client=mongo)
    status = await run_deletion(
        settings, storage, 55, confirm=True, actor=OWNER_ID, clock=clock, out=out
    )
    assert status == 0, out.getvalue()
    assert "deleted user 55: 1 templates deleted, 0 orders anonymised" in out.getvalue()
    assert await mongo.db["templates"].count_documents({}) == 0
    assert await mongo.db["parcel_presets"].count_documents({}) == 0  # names can be personal
    user = await mongo.db["users"].find_one({"_id": 55})
    assert user is not None and user["username"] is None
    [entry] = await mongo.db["audit"].find({"action": "privacy.delete_data"}).to_list(None)
    assert entry["actor"] == OWNER_ID and entry["target"] == "user:55"
    alerts = await mongo.db["outbox"].find({"kind": "admin_alert"}).to_list(None)
    assert any("Customer 55 deleted their data" in a["text"] for a in alerts)


async def test_refused_while_a_payment_is_open_or_no_account(
    mongo: Mongo, clock: FakeClock
) -> None:
    settings = make_settings()
    await _seed(mongo, clock)
    await mongo.db["payments"].insert_one(
        {"user_id": 55, "status": "pending", "provider": "oxapay", "amount_cents": 1000}
    )
    out = io.StringIO()
    storage = build_storage(settings, "mongomock://", client=mongo)
    assert await run_deletion(settings, storage, 55, confirm=True, clock=clock, out=out) == 1
    assert "still open for user 55: payment" in out.getvalue()
    assert await mongo.db["templates"].count_documents({}) == 1
    assert await mongo.db["parcel_presets"].count_documents({}) == 1
    out = io.StringIO()
    storage = build_storage(settings, "mongomock://", client=mongo)
    assert await run_deletion(settings, storage, 56, confirm=True, clock=clock, out=out) == 1
    assert "no account 56" in out.getvalue()
