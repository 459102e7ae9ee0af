"""Admin console storage and services: stats aggregations, CSV export, masking, exactly-once
balance adjustments under concurrency, keyed audit entries."""

from __future__ import annotations

import asyncio
import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from services.admin import AdminService, InputError, parse_adjustment, parse_percent
from services.audit import AuditService
from services.export import ExportError, ExportService
from services.masking import mask_phone
from services.runtime import RuntimeFlags
from services.stats import StatsService, period_start
from storage.audit import AuditRepo
from storage.client import Mongo
from storage.confirmations import ConfirmationsRepo
from storage.exports import ExportRepo
from storage.indexes import IndexOptions, ensure_indexes
from storage.ledger import LedgerRepo
from storage.orders import OrdersRepo
from storage.payments import PaymentsRepo
from storage.runtime_settings import RuntimeSettingsRepo
from storage.stats import StatsRepo
from storage.users import UsersRepo
from tests.conftest import FakeClock, YieldingDb


def test_mask_phone_keeps_the_shape_and_last_two_digits() -> None:
    assert mask_phone("(212) 555-0123") == "(***) ***-**23"
    assert mask_phone("+1 312 555 0199") == "+* *** *** **99"
    assert mask_phone("") == "" and mask_phone(None) == ""
    assert mask_phone("7") == "7"


def test_admin_input_parsing() -> None:
    assert parse_adjustment("15", "en") == 1500
    assert parse_adjustment("-5.50", "en") == -550
    assert parse_adjustment("−2", "en") == -200
    assert parse_adjustment("+$3.10", "en") == 310
    for bad in ("0", "abc", "1e3", "-", "10.555", "200000"):
        with pytest.raises(InputError):
            parse_adjustment(bad, "en")
    assert parse_percent("15%") == 15 and parse_percent("0") == 0 and parse_percent("100") == 100
    for bad in ("101", "-1", "5.5", "x"):
        with pytest.raises(InputError):
            parse_percent(bad)


# -- stats ----------------------------------------------------------------------------------


async def test_stats_aggregations(mongo: Mongo, clock: FakeClock) -> None:
    db = mongo.db
    await ensure_indexes(db, IndexOptions(ttl_monitor=False))
    now = clock()
    old = now - timedelta(days=40)
    await db["users"].insert_many(
        [
            {"_id": 1, "created_at": now, "last_seen_at": now},
            {"_id": 2, "created_at": old, "last_seen_at": now - timedelta(days=3)},
            {"_id": 3, "created_at": old, "last_seen_at": old},
        ]
    )
    order = {"user_id": 1, "created_at": now - timedelta(minutes=10), "purchased_at": now}
    await db["orders"].insert_many(
        [
            {**order, "_id": ObjectId(), "status": "purchased", "price_cents": 1500,
             "carrier_cost_cents": 1000},
            {**order, "_id": ObjectId(), "status": "purchased", "price_cents": 2500,
             "carrier_cost_cents": 2000, "created_at": now - timedelta(minutes=30)},
            {**order, "_id": ObjectId(), "status": "refunded", "price_cents": 900,
             "carrier_cost_cents": 700},
            {**order, "_id": ObjectId(), "status": "draft"},
            {**order, "_id": ObjectId(), "status": "purchased", "price_cents": 99,
             "carrier_cost_cents": 1, "purchased_at": old, "created_at": old},
        ]
    )
    pay = {"user_id": 1, "created_at": now, "paid_at": now}
    await db["payments"].insert_many(
        [
            {**pay, "_id": ObjectId(), "provider": "oxapay", "status": "paid",
             "credited_cents": 2500, "order_id": "a", "provider_key": "a"},
            {**pay, "_id": ObjectId(), "provider": "stars", "status": "paid",
             "credited_cents": 1000, "order_id": "b", "provider_key": "b"},
            {**pay, "_id": ObjectId(), "provider": "oxapay", "status": "expired",
             "order_id": "c", "provider_key": "c"},
            {**pay, "_id": ObjectId(), "provider": "oxapay", "status": "pending",
             "order_id": "d", "provider_key": "d"},
        ]
    )
    await db["refunds"].insert_many(
        [
            {"_id": ObjectId(), "order_id": ObjectId(), "status": "credited", "amount_cents": 900,
             "created_at": now, "credited_at": now},
            {"_id": ObjectId(), "order_id": ObjectId(), "status": "requested",
             "amount_cents": 500, "created_at": now},
        ]
    )
    await db["payment_events"].insert_many(
        [{"_id": "e1", "count": 3}, {"_id": "e2", "count": 1}]
    )
    service = StatsService(StatsRepo(db), PaymentsRepo(db), clock=clock)
    report = await service.report("7d")
    assert (report.users.total, report.users.new) == (3, 1)
    assert (report.users.active_24h, report.users.active_7d) == (1, 2)
    orders = report.orders
    assert (orders.purchased, orders.refunded) == (2, 1)
    assert (orders.revenue_cents, orders.carrier_cost_cents, orders.margin_cents) == (
        4000, 3000, 1000
    )
    assert orders.avg_completion_seconds == pytest.approx((600 + 1800 + 600) / 3)
    assert report.payments.topups == {"oxapay": (1, 2500), "stars": (1, 1000)}
    assert report.payments.success_rate == pytest.approx(2 / 3)  # the pending one undecided
    assert (report.refunds.requested, report.refunds.credited) == (2, 1)
    assert report.refunds.credited_cents == 900
    assert (report.callbacks_total, report.callbacks_duplicate) == (4, 2)
    assert report.duplicate_ratio == pytest.approx(0.5)
    everything = await service.report("all")
    assert everything.orders.purchased == 3 and everything.users.new == 3
    assert period_start("today", now) == now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert period_start("all", now) is None


# -- export ---------------------------------------------------------------------------------


async def test_export_streams_rows_with_masked_phones(
    mongo: Mongo, clock: FakeClock, tmp_path: Path
) -> None:
    db = mongo.db
    now = clock()
    await db["orders"].insert_many(
        [
            {
                "_id": ObjectId(),
                "user_id": 9,
                "status": "purchased",
                "price_cents": 1205,
                "from_address": {"name": "@evil", "phone": "(212) 555-0123"},
                "to_address": {"name": "-1+1", "phone": None},
                "created_at": now - timedelta(days=day),
            }
            for day in range(5)
        ]
    )
    audit = AuditService(AuditRepo(db), clock=clock)
    service = ExportService(
        ExportRepo(db), audit=audit, batch_size=2, clock=clock, directory=tmp_path
    )
    since = (now - timedelta(days=2)).date()
    result = await service.write_csv(
        "orders", actor=7, since=since, until=now.date(), show_phones=False
    )
    assert result.rows == 3 and result.path.parent == tmp_path
    with result.path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert {r["from_phone"] for r in rows} == {"(***) ***-**23"}
    assert {r["to_phone"] for r in rows} == {""}
    assert {r["from_name"] for r in rows} == {"'@evil"}
    assert {r["to_name"] for r in rows} == {"'-1+1"}
    assert {r["price_usd"] for r in rows} == {"12.05"}
    with pytest.raises(ExportError):
        await service.write_csv(
            "orders", actor=7, since=now.date(), until=since, show_phones=True
        )
    with pytest.raises(ExportError):
        await service.write_csv("ledger", actor=7, since=None, until=None, show_phones=True)
    users = await service.write_csv("users", actor=7, since=None, until=None, show_phones=True)
    assert users.rows == 0 and users.path.read_text().startswith("user_id,username")


# -- balance adjustments --------------------------------------------------------------------


class Notices:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def account_blocked(self, user_id: int, blocked: bool, key: str) -> None:
        self.calls.append(("blocked", (user_id, blocked, key)))

    async def balance_adjusted(
        self, user_id: int, amount_cents: int, balance_cents: int, reason: str, key: str
    ) -> None:
        self.calls.append(("adjusted", (user_id, amount_cents, balance_cents, key)))

    async def discount_changed(self, user_id: int, percent: int, key: str) -> None:
        self.calls.append(("discount", (user_id, percent, key)))

    async def api_mode_changed(self, actor: int, before: str, after: str, key: str) -> None:
        self.calls.append(("api_mode", (actor, before, after, key)))


def make_admin(db: Any, clock: FakeClock, notices: Notices) -> AdminService:
    return AdminService(
        users=UsersRepo(db),
        orders=OrdersRepo(db),
        payments=PaymentsRepo(db),
        ledger=LedgerRepo(db),
        confirmations=ConfirmationsRepo(db),
        audit=AuditService(AuditRepo(db), clock=clock),
        runtime=RuntimeFlags(RuntimeSettingsRepo(db), clock=clock, cache_seconds=0),
        broadcasts=None,  # type: ignore[arg-type]  # maintenance: tests/services
        notices=notices,
        confirm_ttl=timedelta(minutes=15),
        recent_items=5,
        clock=clock,
    )


@pytest.mark.parametrize("seed", range(5))
async def test_concurrent_confirmations_apply_once(
    mongo: Mongo, clock: FakeClock, seed: int
) -> None:
    await ensure_indexes(mongo.db, IndexOptions(ttl_monitor=False))
    db = YieldingDb(mongo.db, seed) if mongo.in_memory else mongo.db
    notices = Notices()
    admin = make_admin(db, clock, notices)
    await mongo.db["users"].insert_one({"_id": 42, "balance_cents": 0})
    ledger = LedgerRepo(db)
    await ledger.apply(user_id=42, amount_cents=1000, kind="topup", key="seed", now=clock())
    confirmation = await admin.prepare_adjustment(1, 42, -700, "  duplicate   charge ")
    assert confirmation["payload"]["reason"] == "duplicate charge"
    cid = str(confirmation["_id"])
    # Two admins (or a double tap) confirm at once; then a third press later.
    outcomes = await asyncio.gather(
        admin.apply_adjustment(1, cid), admin.apply_adjustment(2, cid)
    )
    later = await admin.apply_adjustment(1, cid)
    statuses = sorted(o.status for o in outcomes)
    assert statuses == ["already_applied", "applied"] and later.status == "already_applied"
    user = await mongo.db["users"].find_one({"_id": 42})
    assert user is not None and user["balance_cents"] == 300
    assert await mongo.db["ledger"].count_documents({"kind": "adjustment"}) == 1
    assert await mongo.db["audit"].count_documents({"action": "balance.adjust"}) == 1
    assert [c for c in notices.calls if c[0] == "adjusted"]  # deduplicated downstream by key
    _, mismatches = await LedgerRepo(mongo.db).audit()
    assert mismatches == []


async def test_adjustment_refusals(mongo: Mongo, clock: FakeClock) -> None:
    db = mongo.db
    notices = Notices()
    admin = make_admin(db, clock, notices)
    await db["users"].insert_one({"_id": 7, "balance_cents": 0})
    with pytest.raises(InputError):
        await admin.prepare_adjustment(1, 7, 100, "   ")
    with pytest.raises(InputError):
        await admin.prepare_adjustment(1, 8, 100, "no such user")
    debit = await admin.prepare_adjustment(1, 7, -1, "too much")
    refused = await admin.apply_adjustment(1, str(debit["_id"]))
    assert refused.status == "insufficient" and refused.balance_cents == 0
    assert (await admin.apply_adjustment(1, str(debit["_id"]))).status == "closed"
    stale = await admin.prepare_adjustment(1, 7, 100, "late")
    clock.advance(minutes=16)
    assert (await admin.apply_adjustment(1, str(stale["_id"]))).status == "expired"
    assert (await admin.apply_adjustment(1, "not-an-id")).status == "unknown"
    assert await db["ledger"].count_documents({}) == 0
    assert notices.calls == []


async def test_block_discount_and_api_mode_are_audited(mongo: Mongo, clock: FakeClock) -> None:
    db = mongo.db
    notices = Notices()
    admin = make_admin(db, clock, notices)
    await db["users"].insert_one({"_id": 7, "balance_cents": 0, "blocked": False})
    assert (await admin.set_blocked(1, 7, True)).changed  # type: ignore[union-attr]
    assert not (await admin.set_blocked(1, 7, True)).changed  # type: ignore[union-attr]
    assert await admin.set_blocked(1, 999, True) is None
    change = await admin.set_discount(1, 7, 20)
    assert change is not None and (change.before, change.after) == (0, 20)
    with pytest.raises(InputError):
        await admin.set_discount(1, 7, 101)
    request = await admin.request_api_mode(1, "production")
    first = await admin.confirm_api_mode(1, str(request["_id"]))
    second = await admin.confirm_api_mode(1, str(request["_id"]))
    assert (first.status, first.before, second.status) == ("applied", "test", "already_applied")
    assert await admin.api_mode() == "production"
    actions = [doc["action"] async for doc in db["audit"].find({}).sort("at", 1)]
    assert actions == ["user.block", "user.discount", "apimode.set"]
    assert [c[0] for c in notices.calls] == ["blocked", "discount", "api_mode"]
