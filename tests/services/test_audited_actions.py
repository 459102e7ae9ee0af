"""Every audited admin action is recorded by the service that performs it: called without
any handler, the action leaves its audit entry (actor, action, target, details), once even
when the action is repeated."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from services.admin import AdminService, MaintenanceOutcome
from services.audit import AuditService
from services.broadcast import BroadcastConfig, BroadcastService
from services.bulk import BulkService
from services.export import ExportService
from services.payments import (
    CardRefund,
    Outcome,
    PaymentService,
    ReviewedCredit,
    StarsRefund,
    StarsRefundRefused,
)
from services.runtime import RuntimeFlags
from storage.audit import AuditRepo
from storage.broadcasts import BroadcastsRepo
from storage.bulk_jobs import BulkJobsRepo
from storage.client import Document, Mongo
from storage.confirmations import ConfirmationsRepo
from storage.exports import ExportRepo
from storage.ledger import LedgerRepo
from storage.orders import OrdersRepo
from storage.payments import PaymentsRepo
from storage.runtime_settings import RuntimeSettingsRepo
from storage.users import UsersRepo
from tests.conftest import FakeClock
from tests.services.test_bulk import CONFIG as BULK_CONFIG
from tests.services.test_stars_history import QuietNotices, config
from tests.storage.test_admin_console import Notices

ADMIN = 42
USER = 701


async def entries(db: Any, action: str) -> list[Document]:
    return await db["audit"].find({"action": action}).to_list(None)


def audit_of(db: Any, clock: FakeClock) -> AuditService:
    return AuditService(AuditRepo(db), clock=clock)


# -- export ----------------------------------------------------------------------------------


async def test_an_export_is_audited_by_the_export_service(
    mongo: Mongo, clock: FakeClock, tmp_path: Path
) -> None:
    db = mongo.db
    await db["users"].insert_one({"_id": USER, "created_at": clock(), "balance_cents": 0})
    service = ExportService(
        ExportRepo(db), audit=audit_of(db, clock), batch_size=10, clock=clock, directory=tmp_path
    )
    since = (clock() - timedelta(days=1)).date()
    result = await service.write_csv(
        "users", actor=ADMIN, since=since, until=None, show_phones=False
    )
    assert result.rows == 1
    [entry] = await entries(db, "export.users")
    assert (entry["actor"], entry["target"]) == (ADMIN, "export:users")
    assert entry["after"] == {
        "rows": 1, "from": since.isoformat(), "to": "…", "phones_masked": True
    }


def _files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


class BrokenAudit(AuditService):
    async def record(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("audit unavailable")


async def test_an_export_that_cannot_be_audited_is_not_handed_out(
    mongo: Mongo, clock: FakeClock, tmp_path: Path
) -> None:
    db = mongo.db
    await db["users"].insert_one({"_id": USER, "created_at": clock(), "balance_cents": 0})
    broken = BrokenAudit(AuditRepo(db), clock=clock)
    service = ExportService(
        ExportRepo(db), audit=broken, batch_size=10, clock=clock, directory=tmp_path
    )
    with pytest.raises(ConnectionError):
        await service.write_csv("users", actor=ADMIN, since=None, until=None, show_phones=True)
    assert _files(tmp_path) == []  # the file is gone with the failed audit


# -- bulk ------------------------------------------------------------------------------------


async def test_a_bulk_cancel_is_audited_once(mongo: Mongo, clock: FakeClock) -> None:
    db = mongo.db
    job_id = ObjectId()
    await db["bulk_jobs"].insert_one(
        {"_id": job_id, "user_id": USER, "status": "running", "cancel_requested_by": None}
    )
    service = BulkService(
        BulkJobsRepo(db),
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        BULK_CONFIG,
        audit=audit_of(db, clock),
        clock=clock,
    )
    first, second = await asyncio.gather(
        service.request_cancel(str(job_id), by=ADMIN), service.request_cancel(str(job_id), by=7)
    )
    assert (first is None) != (second is None)
    [entry] = await entries(db, "bulk.cancel")
    assert (entry["_id"], entry["actor"], entry["target"]) == (
        f"bulk-cancel:{job_id}", ADMIN if first else 7, str(job_id)
    )
    assert entry["before"] == {"status": "running"}
    assert await service.request_cancel(str(job_id), by=ADMIN) is None
    assert len(await entries(db, "bulk.cancel")) == 1


# -- broadcasts and maintenance ---------------------------------------------------------------


def broadcasts_of(db: Any, clock: FakeClock) -> BroadcastService:
    cfg = BroadcastConfig(
        rate_per_second=25, progress_interval=1, batch_size=10, max_concurrency=2,
        max_text_length=4000,
    )
    return BroadcastService(
        BroadcastsRepo(db), UsersRepo(db), cfg, audit=audit_of(db, clock), clock=clock
    )


async def test_a_confirmed_broadcast_is_audited_once(mongo: Mongo, clock: FakeClock) -> None:
    db = mongo.db
    service = broadcasts_of(db, clock)
    draft = await service.create_draft(ADMIN, texts={"*": "Hello"}, admin_language="en")
    bid = str(draft["_id"])
    taps = await asyncio.gather(
        *(
            service.confirm(ADMIN, bid, progress_chat_id=ADMIN, progress_message_id=5)
            for _ in range(3)
        )
    )
    assert len([t for t in taps if t is not None]) == 1
    [entry] = await entries(db, "broadcast.start")
    assert (entry["_id"], entry["actor"], entry["target"]) == (
        f"broadcast.start:{bid}", ADMIN, f"broadcast:{bid}"
    )
    assert entry["after"] == {
        "broadcast_id": bid, "kind": draft.get("kind"), "photo": False, "languages": ["*"]
    }


class MaintenanceNotices(Notices):
    def maintenance_texts(self, enabled: bool, message: str | None) -> dict[str, str]:
        return {"en": f"on: {message}" if enabled else "over"}


def admin_of(db: Any, clock: FakeClock) -> AdminService:
    return AdminService(
        users=UsersRepo(db),
        orders=OrdersRepo(db),
        payments=PaymentsRepo(db),
        ledger=LedgerRepo(db),
        confirmations=ConfirmationsRepo(db),
        audit=audit_of(db, clock),
        runtime=RuntimeFlags(RuntimeSettingsRepo(db), clock=clock, cache_seconds=0),
        broadcasts=broadcasts_of(db, clock),
        notices=MaintenanceNotices(),
        confirm_ttl=timedelta(minutes=15),
        recent_items=5,
        clock=clock,
    )


async def test_maintenance_switching_is_a_service(mongo: Mongo, clock: FakeClock) -> None:
    """Stores the flag, audits every switch, tells customers only on a transition."""
    db = mongo.db
    admin = admin_of(db, clock)
    opened: list[int] = []

    async def open_progress() -> tuple[int, int]:
        opened.append(1)
        return ADMIN, 100 + len(opened)

    async def switch(enabled: bool, message: str | None) -> tuple[MaintenanceOutcome, Any]:
        outcome = await admin.set_maintenance(ADMIN, enabled, message)
        started = await admin.announce_maintenance(
            ADMIN, outcome, message, admin_language="en", open_progress=open_progress
        )
        return outcome, started

    outcome, started = await switch(True, "Back at 18:00")
    assert outcome is MaintenanceOutcome.TURNED_ON and outcome.changed and outcome.enabled
    assert (await admin.maintenance()).enabled
    assert started is not None and started["kind"] == "maintenance_on"
    assert started["texts"] == {"en": "on: Back at 18:00"}
    assert (started["progress_chat_id"], started["progress_message_id"]) == (ADMIN, 101)

    outcome, started = await switch(True, None)
    assert outcome is MaintenanceOutcome.ALREADY_ON and not outcome.changed
    assert started is None and len(opened) == 1  # no second notice, no progress message

    outcome, started = await switch(False, None)
    assert outcome is MaintenanceOutcome.TURNED_OFF and not (await admin.maintenance()).enabled
    assert started is not None and started["texts"] == {"en": "over"}
    assert await admin.set_maintenance(ADMIN, False, None) is MaintenanceOutcome.ALREADY_OFF

    on = await entries(db, "maintenance.on")
    assert [(e["actor"], e["target"], e["after"]) for e in on] == [
        (ADMIN, "runtime:maintenance", {"enabled": True, "message": "Back at 18:00"}),
        (ADMIN, "runtime:maintenance", {"enabled": True, "message": None}),
    ]
    assert on[0]["before"] == {"enabled": False, "message": None}
    assert len(await entries(db, "maintenance.off")) == 2
    starts = await entries(db, "broadcast.start")
    assert sorted(e["after"]["kind"] for e in starts) == ["maintenance_off", "maintenance_on"]
    assert {e["actor"] for e in starts} == {ADMIN}


# -- payments --------------------------------------------------------------------------------


@pytest.fixture
async def payments(mongo: Mongo, clock: FakeClock) -> PaymentService:
    await mongo.db["users"].insert_one({"_id": USER, "balance_cents": 0, "ledger_seq": 0})
    cfg = dataclasses.replace(config(overlap=10, max_pages=1), card_enabled=True)
    return PaymentService(
        PaymentsRepo(mongo.db),
        LedgerRepo(mongo.db),
        QuietNotices(),
        cfg,
        oxapay=None,
        audit=audit_of(mongo.db, clock),
        confirmations=ConfirmationsRepo(mongo.db),
        clock=clock,
    )


async def _card(service: PaymentService, paid_cents: int, charge: str = "pi_1") -> str:
    created = await service.create_card_topup(USER, 2500)
    await service.on_card_paid(
        USER, created.payload, telegram_charge_id=f"tg_{charge}", provider_charge_id=charge,
        currency="USD", total_amount=paid_cents,
    )
    return created.payment_id


async def test_crediting_a_reviewed_payment_is_audited_once(
    payments: PaymentService, mongo: Mongo
) -> None:
    payment_id = await _card(payments, 2400)  # underpaid: under review, received known
    outcomes = await asyncio.gather(
        *(payments.credit_reviewed(ADMIN, payment_id) for _ in range(3))
    )
    assert sorted(o for o, _ in outcomes) == [Outcome.ALREADY_CREDITED] * 2 + [Outcome.CREDITED]
    [entry] = await entries(mongo.db, "payment.credit_reviewed")
    assert (entry["_id"], entry["actor"], entry["target"]) == (
        "audit:topup:card:pi_1", ADMIN, f"payment:{payment_id}"
    )
    assert entry["before"] == {"status": "suspicious", "received_cents": 2400}
    assert entry["after"] == {"status": "paid", "credited_cents": 2400, "typed": False}


async def test_a_typed_credit_confirmed_twice_is_audited_once(
    payments: PaymentService, mongo: Mongo
) -> None:
    payment_id = await _card(payments, 2400)
    confirmation = await payments.prepare_reviewed_credit(ADMIN, payment_id, 2000)
    cid = str(confirmation["_id"])
    first = await payments.confirm_reviewed_credit(ADMIN, cid)
    again = await payments.confirm_reviewed_credit(ADMIN, cid)
    assert (first[0], again[0]) == (ReviewedCredit.CREDITED, ReviewedCredit.ALREADY_CREDITED)
    assert first[0] == "credited"  # a StrEnum: still equal to the stored string
    [entry] = await entries(mongo.db, "payment.credit_reviewed")
    assert entry["actor"] == ADMIN
    assert entry["after"] == {"status": "paid", "credited_cents": 2000, "typed": True}


async def test_a_card_refund_is_audited_once_by_the_service(
    payments: PaymentService, mongo: Mongo
) -> None:
    payment_id = await _card(payments, 2500)
    results = await asyncio.gather(
        *(payments.record_card_refund(ADMIN, payment_id) for _ in range(3))
    )
    assert sorted(r for r, _ in results) == [CardRefund.ALREADY_REFUNDED] * 2 + [
        CardRefund.RECORDED
    ]
    [entry] = await entries(mongo.db, "payment.refund_card")
    assert (entry["_id"], entry["actor"], entry["target"]) == (
        "audit:card-refund:pi_1", ADMIN, f"payment:{payment_id}"
    )
    assert entry["after"] == {"status": "refunded", "debited_cents": 2500}
    missing = await payments.record_card_refund(ADMIN, str(ObjectId()))
    assert missing == (CardRefund.NOT_FOUND, None)
    assert len(await entries(mongo.db, "payment.refund_card")) == 1


async def test_a_stars_refund_is_audited_by_the_service_and_a_refusal_is_not(
    payments: PaymentService, mongo: Mongo
) -> None:
    created = await payments.create_stars_topup(USER, 1000)
    assert await payments.on_stars_paid(USER, created.payload, "ch_1", created.stars) == (
        Outcome.CREDITED
    )

    async def refused(user_id: int, charge_id: str) -> None:
        raise StarsRefundRefused("CHARGE_NOT_FOUND")

    result = await payments.refund_stars(ADMIN, created.payment_id, refused)
    assert (result.status, result.reason) == (StarsRefund.REFUSED, "CHARGE_NOT_FOUND")
    assert await entries(mongo.db, "payment.refund_stars") == []

    async def refunded(user_id: int, charge_id: str) -> None:
        return None

    result = await payments.refund_stars(ADMIN, created.payment_id, refunded)
    assert result.status is StarsRefund.REFUNDED
    again = await payments.refund_stars(ADMIN, created.payment_id, refunded)
    assert again.status is StarsRefund.ALREADY_REFUNDED
    [entry] = await entries(mongo.db, "payment.refund_stars")
    assert (entry["actor"], entry["target"]) == (ADMIN, f"payment:{created.payment_id}")
    assert entry["before"] == {"status": "paid"}
    assert entry["after"] == {"status": "refunded", "refund_state": "done"}
