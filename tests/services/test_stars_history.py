"""The Stars history cursor (``PaymentService.reconcile_stars``) on a history that is not
strictly append-only: whatever is inserted or removed before the cursor, every payment
is credited exactly once, every run ends, and the stored cursor stays bounded."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta

import pytest

from services.audit import AuditService
from services.payments import (
    STARS_PAGE,
    PaymentService,
    StarsTransaction,
    TopUpConfig,
)
from storage.audit import AuditRepo
from storage.client import Document, Mongo
from storage.ledger import LedgerRepo
from storage.payments import PaymentsRepo
from tests.conftest import FakeClock

USERS = (501, 502, 503)


class QuietNotices:
    async def topup_credited(self, *args: object, **kwargs: object) -> None:
        return None

    async def topup_expired(self, *args: object, **kwargs: object) -> None:
        return None

    async def topup_under_review(self, *args: object, **kwargs: object) -> None:
        return None

    async def ledger_conflict(self, *args: object, **kwargs: object) -> None:
        return None

    async def topup_overpaid(self, *args: object, **kwargs: object) -> None:
        return None

    async def stale_payment(self, *args: object, **kwargs: object) -> None:
        return None

    async def stars_refund_unknown(self, *args: object, **kwargs: object) -> None:
        return None

    async def stars_refund_settled(self, *args: object, **kwargs: object) -> None:
        return None

    async def stars_refund_unexpected(self, *args: object, **kwargs: object) -> None:
        return None

    async def invoice_settled(self, *args: object, **kwargs: object) -> None:
        return None


def config(*, overlap: int, max_pages: int) -> TopUpConfig:
    return TopUpConfig(
        currency="USD",
        min_cents=100,
        max_cents=100_000,
        lifetime_minutes=60,
        callback_url="https://bot.example/cb",
        return_url=None,
        stars_enabled=True,
        crypto_enabled=False,
        stars_per_usd=77,
        stars_lifetime_minutes=600,
        stale_after=timedelta(minutes=30),
        escalate_after=timedelta(hours=24),
        stars_max_pages=max_pages,
        stars_overlap=overlap,
    )


class History:
    """Telegram's list, oldest first, that the test edits behind the cursor's back."""

    def __init__(self) -> None:
        self.items: list[StarsTransaction] = []
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, offset: int, limit: int) -> Sequence[StarsTransaction] | None:
        assert offset >= 0 and 1 <= limit <= 100
        self.calls.append((offset, limit))
        return self.items[offset : offset + limit]


async def _service(mongo: Mongo, clock: FakeClock, **cfg: int) -> PaymentService:
    for uid in USERS:
        await mongo.db["users"].insert_one({"_id": uid, "balance_cents": 0, "ledger_seq": 0})
    return PaymentService(
        PaymentsRepo(mongo.db),
        LedgerRepo(mongo.db),
        QuietNotices(),
        config(**cfg),
        oxapay=None,
        audit=AuditService(AuditRepo(mongo.db), clock=clock),
        clock=clock,
    )


async def _payment(service: PaymentService, rng: random.Random, n: int) -> StarsTransaction:
    uid = rng.choice(USERS)
    created = await service.create_stars_topup(uid, 1000)
    return StarsTransaction(f"ch{n}", True, uid, created.payload, created.stars)


async def _topups(mongo: Mongo) -> list[Document]:
    return await mongo.db["ledger"].find({"kind": "topup"}).to_list(None)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_every_payment_credited_once_whatever_moves_before_the_cursor(
    mongo: Mongo, clock: FakeClock, seed: int
) -> None:
    rng = random.Random(seed)
    service = await _service(mongo, clock, overlap=7, max_pages=1)
    history = History()
    n = 0
    for _ in range(15):
        for _ in range(rng.randint(0, 25)):
            n += 1
            tx = await _payment(service, rng, n)
            where = rng.random()
            if where < 0.6 or not history.items:
                history.items.append(tx)
            elif where < 0.8:  # just before the end: inside the overlap window
                history.items.insert(max(0, len(history.items) - rng.randint(1, 6)), tx)
            else:  # anywhere before the cursor, deeper than the window
                history.items.insert(rng.randrange(len(history.items)), tx)
        if history.items and rng.random() < 0.1:
            history.items.pop(rng.randrange(len(history.items)))  # a listing that vanished
        history.calls.clear()
        await service.reconcile_stars(history)
        assert len(history.calls) == 1  # a run reads a bounded number of pages
        cursor = await mongo.db["settings"].find_one({"_id": "stars_cursor"})
        assert cursor is not None and len(cursor["window"]) <= 7
    for _ in range(2 + n // STARS_PAGE + 2):  # then it catches up and settles
        await service.reconcile_stars(history)
    listed = {tx.tx_id for tx in history.items}
    credited = [str(e["_id"]).removeprefix("topup:stars:") for e in await _topups(mongo)]
    assert len(credited) == len(set(credited))  # never twice
    assert listed <= set(credited)  # never skipped
    _, mismatches = await LedgerRepo(mongo.db).audit()
    assert mismatches == []
    # Settled: another run reads only the overlap window, and credits nothing new.
    before = len(credited)
    history.calls.clear()
    counts = await service.reconcile_stars(history)
    assert len(await _topups(mongo)) == before
    assert counts.get("history_changed") is None
    assert len(history.calls) == 1


async def test_an_insert_inside_the_window_needs_no_rescan(
    mongo: Mongo, clock: FakeClock
) -> None:
    rng = random.Random(9)
    service = await _service(mongo, clock, overlap=5, max_pages=3)
    history = History()
    history.items = [await _payment(service, rng, n) for n in range(12)]
    await service.reconcile_stars(history)
    history.items.insert(10, await _payment(service, rng, 100))
    history.calls.clear()
    counts = await service.reconcile_stars(history)
    assert counts == {"credited": 1}
    assert history.calls == [(7, 100)]  # the window (5) re-read from offset 12 - 5
    assert len(await _topups(mongo)) == 13


async def test_an_insert_before_the_window_is_detected_and_read(
    mongo: Mongo, clock: FakeClock
) -> None:
    rng = random.Random(10)
    service = await _service(mongo, clock, overlap=3, max_pages=3)
    history = History()
    history.items = [await _payment(service, rng, n) for n in range(20)]
    await service.reconcile_stars(history)
    history.items.insert(2, await _payment(service, rng, 100))
    counts = await service.reconcile_stars(history)
    assert counts.get("history_changed") == 1
    counts = await service.reconcile_stars(history)  # read again from the start
    assert counts.get("credited") == 1 and counts.get("already_credited") == 20
    assert len(await _topups(mongo)) == 21


async def test_a_history_that_cannot_be_read_keeps_the_cursor(
    mongo: Mongo, clock: FakeClock
) -> None:
    rng = random.Random(11)
    service = await _service(mongo, clock, overlap=3, max_pages=3)
    history = History()
    history.items = [await _payment(service, rng, n) for n in range(5)]
    await service.reconcile_stars(history)
    cursor = await mongo.db["settings"].find_one({"_id": "stars_cursor"})

    async def unavailable(offset: int, limit: int) -> None:
        return None

    counts = await service.reconcile_stars(unavailable)
    assert counts == {"history_unavailable": 1}
    assert await mongo.db["settings"].find_one({"_id": "stars_cursor"}) == cursor
