"""PurchaseService against the in-memory database (every call may yield, as on a server)
and a scripted carrier whose calls a test can hold, to stage the races of recovery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from models.shipping import Label, VoidResult
from providers.errors import ProviderRejected
from services.purchase import PurchaseService
from services.shipping import ShippingGateway
from storage.client import Document, Mongo
from storage.indexes import IndexOptions, ensure_indexes
from storage.ledger import LedgerRepo
from storage.orders import OrdersRepo
from tests.conftest import FakeClock, YieldingDb

USER = 4242
RECOVERY_AFTER = timedelta(seconds=90)
CHEAP = {"rate_id": "se-501", "shipment_id": "se-500", "quote_id": "1", "price_cents": 804}
DEAR = {"rate_id": "se-502", "shipment_id": "se-500", "quote_id": "1", "price_cents": 3349}


class SimulatedCrash(Exception):
    """The process dies here (nothing after this point runs)."""


class ScriptedCarrier(ShippingGateway):
    """Buys labels from rate ids; a test may hold a purchase or a lookup half-way."""

    def __init__(self) -> None:  # no clients: nothing here talks HTTP
        self.bought: dict[str, Label] = {}
        self.voided: list[str] = []
        self.validate_options: list[str] = []
        self.formats: list[tuple[str, str]] = []
        self.buying = asyncio.Event()
        self.release_buy: asyncio.Event | None = None
        self.refuse: Exception | None = None
        self.after_lookup: Callable[[], Awaitable[None]] | None = None

    async def buy(
        self,
        mode: str,
        rate_id: str,
        *,
        validate_address: str = "no_validation",
        label_format: str = "pdf",
        label_layout: str = "4x6",
    ) -> Label:
        self.validate_options.append(validate_address)
        self.formats.append((label_format, label_layout))
        self.buying.set()
        if self.refuse is not None:
            raise self.refuse
        if self.release_buy is not None:
            await self.release_buy.wait()  # the carrier is slow; the label comes later
        label = Label(
            label_id=f"se-lb-{len(self.bought) + 1}",
            status="completed",
            tracking_number=f"9400{len(self.bought) + 1:018d}",
            shipment_id="se-500",
            cost_cents=700,
            pdf_url="https://example.invalid/label.pdf",
            voided=False,
            created_at=None,
            carrier_code="stamps_com",
            service_code="usps_ground_advantage",
        )
        self.bought[rate_id] = label
        return label

    async def find_label(
        self, mode: str, rate_id: str, *, shipment_id: str | None = None
    ) -> Label | None:
        found = self.bought.get(rate_id)
        if self.after_lookup is not None:
            await self.after_lookup()  # the answer is on its way while the world moves on
        return found

    async def void(self, mode: str, label_id: str) -> VoidResult:
        self.voided.append(label_id)
        return VoidResult(approved=True, message="voided")


@dataclass
class Notices:
    compensated: list[tuple[ObjectId, str, bool]] = field(default_factory=list)
    recovered: list[ObjectId] = field(default_factory=list)
    orphaned: list[tuple[ObjectId, str, bool]] = field(default_factory=list)

    async def label_compensated(self, order: Document, reason: str, *, tell_user: bool) -> None:
        self.compensated.append((order["_id"], reason, tell_user))

    async def label_recovered(self, order: Document) -> None:
        self.recovered.append(order["_id"])

    async def label_orphaned(self, order: Document, label: Label, *, voided: bool) -> None:
        self.orphaned.append((order["_id"], label.label_id, voided))


class CrashingLedger(LedgerRepo):
    """A ledger whose next effect of ``crash_on`` kind kills the process first, and whose
    ``hold`` kind waits for ``gate`` before it is applied."""

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self.crash_on: str | None = None
        self.hold: str | None = None
        self.gate = asyncio.Event()
        self.holding = asyncio.Event()

    async def apply(self, **kwargs: Any) -> Any:
        if kwargs["kind"] == self.crash_on:
            self.crash_on = None
            raise SimulatedCrash
        if kwargs["kind"] == self.hold:
            self.holding.set()
            await self.gate.wait()
        return await super().apply(**kwargs)


@dataclass
class World:
    mongo: Mongo
    clock: FakeClock
    orders: OrdersRepo
    ledger: CrashingLedger
    carrier: ScriptedCarrier
    notices: Notices
    purchase: PurchaseService

    async def draft(self) -> Document:
        """An open draft whose review shows the cheap rate (offer ``1-0``)."""
        now = self.clock()
        doc = await self.orders.create_draft(USER, now=now, expires_at=now + timedelta(hours=1))
        fields = {
            "rates": [CHEAP, DEAR],
            "quote_id": "1",
            "api_mode": "test",
            "rate": CHEAP,
            "price_cents": CHEAP["price_cents"],
            "offer_id": "1-0",
        }
        await self.mongo.db["orders"].update_one({"_id": doc["_id"]}, {"$set": fields})
        return {**doc, **fields}

    async def balance(self) -> int:
        user = await self.mongo.db["users"].find_one({"_id": USER})
        assert user is not None
        return int(user["balance_cents"])

    async def entries(self, kind: str) -> list[Document]:
        entries: list[Document] = (
            await self.mongo.db["ledger"].find({"user_id": USER, "kind": kind}).to_list(None)
        )
        return entries

    async def order(self, order_id: ObjectId) -> Document:
        doc = await self.orders.get(order_id)
        assert doc is not None
        return doc

    async def audit_ok(self) -> None:
        _, mismatches = await self.ledger.audit()
        assert mismatches == []


@pytest.fixture(params=[0, 1, 2, 3])
async def world(
    request: pytest.FixtureRequest, mongo: Mongo, clock: FakeClock
) -> AsyncIterator[World]:
    await ensure_indexes(mongo.db, IndexOptions(ttl_monitor=not mongo.in_memory))
    await mongo.db["users"].insert_one({"_id": USER, "balance_cents": 0})
    db = YieldingDb(mongo.db, request.param) if mongo.in_memory else mongo.db
    orders, ledger = OrdersRepo(db), CrashingLedger(db)
    await ledger.apply(user_id=USER, amount_cents=10_000, kind="topup", key="seed", now=clock())
    carrier, notices = ScriptedCarrier(), Notices()
    service = PurchaseService(
        orders, ledger, carrier, notices, recovery_after=RECOVERY_AFTER, clock=clock
    )
    yield World(mongo, clock, orders, ledger, carrier, notices, service)


async def test_a_pay_button_of_another_offer_charges_nothing(world: World) -> None:
    draft = await world.draft()
    for offer, cents in (("1-0", 3349), ("1-1", 804), ("0-0", 804), ("1-1", 3349)):
        result = await world.purchase.purchase(
            USER, draft["_id"], offer_id=offer, price_cents=cents
        )
        assert result.status == "changed" and result.order is not None
        assert result.order["offer_id"] == "1-0"
    assert await world.balance() == 10_000
    assert await world.entries("label") == []
    assert world.carrier.bought == {}
    assert (await world.order(draft["_id"]))["status"] == "draft"


async def test_a_rate_changed_just_before_the_claim_is_not_bought(world: World) -> None:
    """The review showed the cheap rate; the draft switches to the dear one while Pay is
    being handled: either the cheap rate is bought at its price, or nothing at all."""
    draft = await world.draft()

    async def switch() -> None:
        now = world.clock()
        await world.orders.update_draft(
            draft["_id"],
            set_fields={"rate": DEAR, "price_cents": DEAR["price_cents"], "offer_id": "1-1"},
            now=now,
            expires_at=now + timedelta(hours=1),
        )

    result, _ = await asyncio.gather(
        world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804), switch()
    )
    debits = await world.entries("label")
    if result.status == "purchased":
        assert [d["amount_cents"] for d in debits] == [-804]
        assert list(world.carrier.bought) == [CHEAP["rate_id"]]
    else:
        assert result.status == "changed"
        assert debits == [] and world.carrier.bought == {}
    await world.audit_ok()


async def test_switch_then_old_button_buys_nothing(world: World) -> None:
    draft = await world.draft()
    now = world.clock()
    await world.orders.update_draft(
        draft["_id"],
        set_fields={"rate": DEAR, "price_cents": DEAR["price_cents"], "offer_id": "1-1"},
        now=now,
        expires_at=now + timedelta(hours=1),
    )
    result = await world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    assert result.status == "changed"
    assert await world.entries("label") == [] and world.carrier.bought == {}
    result = await world.purchase.purchase(USER, draft["_id"], offer_id="1-1", price_cents=3349)
    assert result.status == "purchased"
    assert [d["amount_cents"] for d in await world.entries("label")] == [-3349]
    assert list(world.carrier.bought) == [DEAR["rate_id"]]


async def _purchase_waiting_at_the_carrier(world: World) -> tuple[Document, asyncio.Task[Any]]:
    draft = await world.draft()
    world.carrier.release_buy = asyncio.Event()
    task = asyncio.ensure_future(
        world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    )
    await world.carrier.buying.wait()
    world.clock.advance(seconds=RECOVERY_AFTER.total_seconds() + 1)
    return draft, task


async def test_recovery_never_refunds_an_order_it_did_not_win(world: World) -> None:
    """Recovery asks the carrier, hears "no label", and meanwhile the purchase completes:
    recovery must lose the transition and credit nothing (the customer has the label)."""
    draft, purchase = await _purchase_waiting_at_the_carrier(world)

    async def purchase_completes() -> None:
        assert world.carrier.release_buy is not None
        world.carrier.release_buy.set()
        await purchase

    world.carrier.after_lookup = purchase_completes
    await world.purchase.recover_stuck()
    assert purchase.result().status == "purchased"
    order = await world.order(draft["_id"])
    assert order["status"] == "purchased" and order["label_id"]
    assert await world.balance() == 10_000 - 804
    assert await world.entries("compensation") == []
    assert world.notices.compensated == [] and world.carrier.voided == []
    await world.audit_ok()


async def test_a_label_bought_after_recovery_failed_the_order_is_voided(world: World) -> None:
    """The carrier is slower than recovery: the order is failed and refunded first; the
    label that then arrives is voided and admins are alerted, nothing is lost silently."""
    draft, purchase = await _purchase_waiting_at_the_carrier(world)
    assert await world.purchase.recover_stuck() == {"compensated": 1}
    assert (await world.order(draft["_id"]))["status"] == "failed"
    assert await world.balance() == 10_000
    assert world.notices.compensated == [(draft["_id"], "not_created", True)]
    assert world.carrier.release_buy is not None
    world.carrier.release_buy.set()
    result = await purchase
    assert result.status == "failed"
    [label] = world.carrier.bought.values()
    assert world.carrier.voided == [label.label_id]
    assert world.notices.orphaned == [(draft["_id"], label.label_id, True)]
    order = await world.order(draft["_id"])
    assert order["status"] == "failed" and order["late_label"]["voided"] is True
    assert order["late_label"]["label_id"] == label.label_id
    assert await world.balance() == 10_000  # charged once, compensated once
    assert len(await world.entries("label")) == 1
    assert len(await world.entries("compensation")) == 1
    await world.audit_ok()


async def test_a_debit_after_recovery_failed_the_order_is_given_back(world: World) -> None:
    """The purchase stalls between its claim and its debit for longer than the recovery
    delay: recovery fails the order (no debit yet to give back); the late debit is then
    compensated by the purchase itself, and no label is bought."""
    draft = await world.draft()
    world.ledger.hold = "label"
    purchase = asyncio.ensure_future(
        world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    )
    await world.ledger.holding.wait()
    world.clock.advance(seconds=RECOVERY_AFTER.total_seconds() + 1)
    assert await world.purchase.recover_stuck() == {"compensated": 1}
    world.ledger.gate.set()
    result = await purchase
    assert result.status == "failed"
    assert world.carrier.bought == {}
    assert await world.balance() == 10_000
    assert len(await world.entries("compensation")) == 1
    await world.audit_ok()


async def test_a_late_debit_whose_worker_died_is_given_back_by_recovery(world: World) -> None:
    """As above, but the stalled purchase dies right after its late debit, before it reads
    the order again: the next recovery run gives the debit back, once."""
    draft = await world.draft()
    world.ledger.hold = "label"
    purchase = asyncio.ensure_future(
        world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    )
    await world.ledger.holding.wait()
    world.clock.advance(seconds=RECOVERY_AFTER.total_seconds() + 1)
    assert await world.purchase.recover_stuck() == {"compensated": 1}
    assert (await world.order(draft["_id"]))["compensation_pending"] is True  # watched
    world.ledger.hold = None
    # The worker wakes up, writes its debit and is killed before anything else.
    await world.ledger.apply(
        user_id=USER,
        amount_cents=-804,
        kind="label",
        key=f"label:{draft['_id']}",
        now=world.clock(),
        meta={"order_id": str(draft["_id"])},
    )
    purchase.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await purchase
    assert await world.balance() == 10_000 - 804
    world.clock.advance(seconds=RECOVERY_AFTER.total_seconds() + 1)
    assert await world.purchase.recover_stuck() == {"compensation_repaired": 1}
    assert await world.purchase.recover_stuck() == {}
    assert await world.balance() == 10_000
    assert len(await world.entries("compensation")) == 1
    assert "compensation_pending" not in await world.order(draft["_id"])
    await world.audit_ok()


async def test_a_failed_order_without_a_debit_is_watched_for_a_day(world: World) -> None:
    draft = await world.draft()
    world.ledger.hold = "label"
    purchase = asyncio.ensure_future(
        world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    )
    await world.ledger.holding.wait()
    world.clock.advance(seconds=RECOVERY_AFTER.total_seconds() + 1)
    assert await world.purchase.recover_stuck() == {"compensated": 1}
    purchase.cancel()  # killed before its debit: none will ever come
    with contextlib.suppress(asyncio.CancelledError):
        await purchase
    world.clock.advance(hours=23)
    assert await world.purchase.recover_stuck() == {}
    assert (await world.order(draft["_id"]))["compensation_pending"] is True
    world.clock.advance(hours=2)
    assert await world.purchase.recover_stuck() == {}
    assert "compensation_pending" not in await world.order(draft["_id"])
    assert await world.entries("compensation") == [] and await world.balance() == 10_000
    await world.audit_ok()


async def test_a_crash_between_failing_and_compensating_is_repaired_once(world: World) -> None:
    draft = await world.draft()
    world.carrier.refuse = ProviderRejected(
        "shipstation", "no funds", operation="create_label", code="insufficient_funds"
    )
    world.ledger.crash_on = "compensation"  # dies after the transition to "failed"
    with pytest.raises(SimulatedCrash):
        await world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    order = await world.order(draft["_id"])
    assert order["status"] == "failed" and order["compensation_pending"] is True
    assert await world.balance() == 10_000 - 804
    assert await world.entries("compensation") == []
    assert await world.purchase.recover_stuck() == {}  # not before the recovery delay
    world.clock.advance(seconds=RECOVERY_AFTER.total_seconds() + 1)
    assert await world.purchase.recover_stuck() == {"compensation_repaired": 1}
    assert await world.purchase.recover_stuck() == {}
    assert await world.balance() == 10_000
    assert len(await world.entries("compensation")) == 1
    assert "compensation_pending" not in await world.order(draft["_id"])
    assert world.notices.compensated == [(draft["_id"], "insufficient_funds", True)]
    await world.audit_ok()


async def test_a_refused_purchase_is_compensated_at_once(world: World) -> None:
    draft = await world.draft()
    world.carrier.refuse = ProviderRejected(
        "shipstation", "no funds", operation="create_label", code="insufficient_funds"
    )
    result = await world.purchase.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    assert result.status == "failed" and result.reason == "insufficient_funds"
    assert await world.balance() == 10_000
    order = await world.order(draft["_id"])
    assert order["status"] == "failed" and "compensation_pending" not in order
    assert world.notices.compensated == [(draft["_id"], "insufficient_funds", False)]
    world.clock.advance(seconds=RECOVERY_AFTER.total_seconds() + 1)
    assert await world.purchase.recover_stuck() == {}
    await world.audit_ok()


@pytest.mark.parametrize(
    ("preference", "bought", "stored"),
    [
        ("zpl", ("zpl", "4x6"), "zpl"),
        ("pdf_letter", ("pdf", "letter"), "pdf_letter"),
        ("png", ("png", "4x6"), "png"),
        ("tiff", ("pdf", "4x6"), "pdf_4x6"),  # an unknown stored value is the default
    ],
)
async def test_label_bought_in_the_customers_format(
    world: World, preference: str, bought: tuple[str, str], stored: str
) -> None:
    async def format_of(user_id: int) -> str:
        assert user_id == USER
        return preference

    service = PurchaseService(
        world.orders,
        world.ledger,
        world.carrier,
        world.notices,
        recovery_after=RECOVERY_AFTER,
        clock=world.clock,
        label_format_of=format_of,
    )
    draft = await world.draft()
    result = await service.purchase(USER, draft["_id"], offer_id="1-0", price_cents=804)
    assert result.status == "purchased"
    assert world.carrier.formats == [bought]
    order = await world.order(draft["_id"])
    assert order["label_format"] == stored
    assert order["label_file_format"] == "pdf"  # what the carrier answered it bought
    assert order["label_downloads"] == {}
    await world.audit_ok()
