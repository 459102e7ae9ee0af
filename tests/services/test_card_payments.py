"""The card rail (``PaymentService`` card methods) under concurrency: every database call
suspends (with seeded extra yields), so concurrent deliveries and admin refunds interleave
at every round trip as on a real server."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from services.audit import AuditService
from services.payments import CARD, Outcome, PaymentService
from storage.audit import AuditRepo
from storage.client import Mongo
from storage.ledger import LedgerRepo
from storage.payments import PaymentsRepo
from tests.conftest import FakeClock, YieldingDb
from tests.services.test_stars_history import QuietNotices, config

USER = 601
OTHER = 602
ADMIN = 1


class CountingNotices(QuietNotices):
    def __init__(self) -> None:
        self.expired: list[str] = []
        self.review: list[int | None] = []

    async def topup_expired(self, user_id: int, amount_cents: int, key: str) -> None:
        self.expired.append(key)

    async def topup_under_review(self, payment: object, received_cents: int | None) -> None:
        self.review.append(received_cents)


World = tuple[PaymentService, CountingNotices, Any]


@pytest.fixture(params=[0, 1, 2, 3])
async def world(
    mongo: Mongo, clock: FakeClock, request: pytest.FixtureRequest
) -> World:
    db = YieldingDb(mongo.db, request.param) if mongo.in_memory else mongo.db
    for uid in (USER, OTHER):
        await db["users"].insert_one({"_id": uid, "balance_cents": 0, "ledger_seq": 0})
    notices = CountingNotices()
    cfg = dataclasses.replace(config(overlap=10, max_pages=1), card_enabled=True)
    audit = AuditService(AuditRepo(db), clock=clock)
    service = PaymentService(
        PaymentsRepo(db), LedgerRepo(db), notices, cfg, oxapay=None, audit=audit, clock=clock
    )
    return service, notices, db


async def _paid(service: PaymentService, charge: str = "pi_1") -> tuple[str, str]:
    created = await service.create_card_topup(USER, 2500)
    assert (created.minor_amount, created.currency) == (2500, "USD")
    outcome = await service.on_card_paid(
        USER, created.payload, telegram_charge_id="tg_1", provider_charge_id=charge,
        currency="USD", total_amount=2500,
    )
    assert outcome == Outcome.CREDITED
    return created.payment_id, created.payload


async def test_twenty_concurrent_deliveries_credit_once(world: World) -> None:
    service, _, db = world
    created = await service.create_card_topup(USER, 2500)
    outcomes = await asyncio.gather(
        *(
            service.on_card_paid(
                USER, created.payload, telegram_charge_id="tg_1", provider_charge_id="pi_1",
                currency="USD", total_amount=2500,
            )
            for _ in range(20)
        )
    )
    assert outcomes.count(Outcome.CREDITED) == 1
    assert set(outcomes) <= {Outcome.CREDITED, Outcome.ALREADY_CREDITED}
    ledger = await db["ledger"].find({}).to_list(None)
    assert [e["_id"] for e in ledger] == ["topup:card:pi_1"]
    user = await db["users"].find_one({"_id": USER})
    assert user["balance_cents"] == 2500


async def test_a_second_charge_or_another_amount_goes_to_review(world: World) -> None:
    service, notices, db = world
    _, payload = await _paid(service)
    again = await service.on_card_paid(
        USER, payload, telegram_charge_id="tg_2", provider_charge_id="pi_2",
        currency="USD", total_amount=2500,
    )
    assert again == Outcome.SUSPICIOUS
    assert await db["ledger"].count_documents({}) == 1
    odd = await service.create_card_topup(USER, 2500)
    outcome = await service.on_card_paid(
        USER, odd.payload, telegram_charge_id="tg_3", provider_charge_id="pi_3",
        currency="USD", total_amount=2400,
    )
    assert outcome == Outcome.SUSPICIOUS and notices.review[-1] == 2400
    assert await db["ledger"].count_documents({}) == 1
    foreign = await service.on_card_paid(
        OTHER, odd.payload, telegram_charge_id="tg_4", provider_charge_id="pi_4",
        currency="USD", total_amount=2500,
    )
    assert foreign == Outcome.UNKNOWN


async def test_concurrent_refund_records_debit_once(world: World) -> None:
    service, _, db = world
    payment_id, _ = await _paid(service)
    results = await asyncio.gather(
        *(service.record_card_refund(ADMIN, payment_id) for _ in range(5))
    )
    assert sorted(r for r, _ in results) == ["already_refunded"] * 4 + ["recorded"]
    debits = await db["ledger"].find({"kind": "refund"}).to_list(None)
    assert [e["_id"] for e in debits] == ["card-refund:pi_1"]
    assert (await db["users"].find_one({"_id": USER}))["balance_cents"] == 0


async def test_refund_refused_when_the_balance_was_spent(world: World, clock: FakeClock) -> None:
    service, _, db = world
    payment_id, _ = await _paid(service)
    await LedgerRepo(db).apply(
        user_id=USER, amount_cents=-2000, kind="label", key="label:x", now=clock()
    )
    result, _ = await service.record_card_refund(ADMIN, payment_id)
    assert result == "insufficient_balance"
    assert (await service.get(payment_id))["status"] == "paid"  # type: ignore[index]
    assert await db["ledger"].count_documents({"kind": "refund"}) == 0


async def test_a_refund_interrupted_after_the_debit_is_finished_by_running_it_again(
    world: World, clock: FakeClock
) -> None:
    service, _, db = world
    payment_id, _ = await _paid(service)
    # The worker died after the debit, before the payment was marked refunded.
    await LedgerRepo(db).apply(
        user_id=USER, amount_cents=-2500, kind="refund", key="card-refund:pi_1", now=clock(),
    )
    result, payment = await service.record_card_refund(ADMIN, payment_id)
    assert result == "recorded" and payment is not None and payment["status"] == "refunded"
    assert await db["ledger"].count_documents({"kind": "refund"}) == 1
    assert (await db["users"].find_one({"_id": USER}))["balance_cents"] == 0


async def test_card_invoices_expire_after_the_grace_with_one_notice(
    world: World, clock: FakeClock
) -> None:
    service, notices, db = world
    created = await service.create_card_topup(USER, 2500)
    clock.advance(minutes=61)
    assert await service.expire_telegram_invoices() == 0  # within the grace
    clock.advance(minutes=5)
    counts = await asyncio.gather(*(service.expire_telegram_invoices() for _ in range(3)))
    assert sum(counts) == 1 and len(notices.expired) == 1
    doc = await db["payments"].find_one({"provider": CARD})
    assert doc["status"] == "expired"
    check = await service.check_card_checkout(USER, created.payload, "USD", 2500)
    assert (check.ok, check.reason) == (False, "used")
    # A charge approved just before expiry still credits.
    outcome = await service.on_card_paid(
        USER, created.payload, telegram_charge_id="tg", provider_charge_id="pi_late",
        currency="USD", total_amount=2500,
    )
    assert outcome == Outcome.CREDITED
