"""Kill the worker at random moments while customers top up, buy and refund.

Each round fires money actions inside the application (Stars and card payments, Pay presses,
refund requests, OxaPay callbacks to the web endpoint), lets them run a random few
milliseconds, then simulates ``kill -9`` (``BotHarness.crash``: every task cancelled where
it stands, nothing flushed) and starts a new worker on the same database and emulator.
Afterwards the jobs run once more and every invariant is checked: the ledger adds up,
every paid invoice is credited exactly once, every bought label reached its customer
(with its receipt at most once), and no update was handled twice.

The in-memory database suspends at every call (``storage.interleave``), as a real server
does, so a kill can land between two writes of one money path. The test counts where its
kills landed: a kill "between writes" found a task suspended at a database call after it
had completed at least one write; most kills must land there, or the test proves little.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import weakref
from collections import Counter
from typing import Any

import pytest
from bson import ObjectId
from pydantic import SecretStr
from telegram import Update
from telegram.ext import TypeHandler

from bot.harness import BotHarness
from bot.settings import Secrets
from sandbox.oxapay import FakeOxaPay
from sandbox.shipstation import FakeShipStation
from services.receipts import short_order_id
from storage.client import Mongo
from storage.interleave import InterleavingDatabase
from tests.conftest import FakeClock, make_settings
from tests.e2e.shop import RECIPIENT, SENDER

# A killed worker leaves update coroutines that never ran: expected here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:coroutine 'Application.*' was never awaited:RuntimeWarning"
)

KILLS = 40
CUSTOMERS = list(range(61_000, 61_006))
KEY = "crash-test-merchant-key"
WRITES = frozenset(
    {
        "insert_one",
        "insert_many",
        "update_one",
        "update_many",
        "replace_one",
        "delete_one",
        "delete_many",
        "find_one_and_update",
        "find_one_and_replace",
        "find_one_and_delete",
        "bulk_write",
    }
)


class KillSpots:
    """Chooses where the kills land and counts where they landed.

    Counts, per task, the suspensions at write calls (two per write: before and after it
    runs). ``arm(n)`` sets ``due`` at the n-th write suspension of the worker's tasks (not
    the test's own), so the kill that follows finds that task suspended inside a database
    call; ``before_kill`` records whether a task had completed a write and was suspended.
    """

    def __init__(self, db: InterleavingDatabase) -> None:
        self._db = db
        self._writes: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        self._test_task = asyncio.current_task()
        self._countdown = 0
        self.due = asyncio.Event()
        self.between_writes = 0
        self.kills = 0
        db.set_hook(self._seen)

    def arm(self, writes: int) -> None:
        self.due.clear()
        self._countdown = writes

    def _seen(self, where: str) -> None:
        task = asyncio.current_task()
        if task is None or task is self._test_task or where.rpartition(".")[2] not in WRITES:
            return
        self._writes[task] = self._writes.get(task, 0) + 1
        if self._countdown > 0:
            self._countdown -= 1
            if self._countdown == 0:
                self.due.set()

    async def wait_due(self, timeout: float) -> None:  # noqa: ASYNC109
        # If the round does less work than chosen, the kill lands where it stands.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.due.wait(), timeout)
        self._countdown = 0

    def before_kill(self) -> None:
        self.kills += 1
        suspended = self._db.suspended()
        if any(self._writes.get(task, 0) >= 2 for task in suspended):
            self.between_writes += 1


def _raw_message(uid: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "message_id": random.randint(10_000, 10**9),
        "date": 1,
        "chat": {"id": uid, "type": "private", "first_name": "C"},
        "from": {"id": uid, "is_bot": False, "first_name": "C"},
        **extra,
    }


@pytest.fixture
async def world(mongo: Mongo, clock: FakeClock) -> Any:
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    oxapay = FakeOxaPay(merchant_api_key=KEY, instant=True)
    await oxapay.start()
    yield mongo, clock, carrier, oxapay
    await oxapay.stop()
    await carrier.stop()


def _shows_pay(message: Any) -> bool:
    """Whether the message still shows its Pay button (edits update it in place)."""
    return any("Pay" in label for label, data in message.buttons if data)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_kills_lose_and_duplicate_nothing(world: Any) -> None:
    mongo, clock, carrier, oxapay = world
    spots = KillSpots(mongo.db) if isinstance(mongo.db, InterleavingDatabase) else None
    rng = random.Random(7)
    base = make_settings()
    port = _free_port()
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        shipstation_test_api_key=SecretStr("TEST_crash"),
        oxapay_merchant_api_key=SecretStr(KEY),
        telegram_payment_provider_token=SecretStr("284685063:TEST:crash"),
    )
    oxapay_settings = base.payments.oxapay.model_copy(
        update={
            "base_url": oxapay.base_url,
            "callback_url": f"http://127.0.0.1:{port}/callbacks/oxapay",
        }
    )
    settings = make_settings(
        secrets=secrets,
        shipping=base.shipping.model_copy(update={"base_url": carrier.base_url}),
        refunds=base.refunds.model_copy(update={"min_label_age_days": 0}),
        payments=base.payments.model_copy(
            update={
                "oxapay": oxapay_settings,
                "stars": base.payments.stars.model_copy(update={"enabled": True}),
            }
        ),
        web=base.web.model_copy(update={"port": port}),
        # A killed worker never releases its poller lease: keep it short so the next
        # worker takes over quickly (production: 30 s).
        poller=base.poller.model_copy(update={"lease_seconds": 0.9, "renew_seconds": 0.3}),
    )
    harness = BotHarness(settings, mongo=mongo, clock=clock, rate_limits=False)
    handled: Counter[int] = Counter()

    async def record(update: Update, context: object) -> None:
        handled[update.update_id] += 1

    async def start() -> None:
        await harness.start()
        # After the gates (which skip re-delivered updates): every update handled.
        harness.application.add_handler(TypeHandler(Update, record), group=-50)

    def services() -> Any:
        return harness.application.bot_data.require_services()

    await start()
    storage = harness.application.bot_data.require_storage()
    for uid in CUSTOMERS:
        harness.add_user(uid, first_name="C")
        await harness.say(uid, "/start")
        await storage.ledger.apply(
            user_id=uid, amount_cents=5_000, kind="topup", key=f"seed:{uid}", now=clock()
        )

    reviews: dict[int, Any] = {}

    async def prepare_reviews() -> None:
        """Walks every customer without an open review to the Pay button of a new order."""
        for uid in CUSTOMERS:
            draft = await services().orders.draft(uid)
            # A review whose keyboard the bot has since replaced (a Pay press replayed from
            # the inbox after a kill edits it) has no Pay to press: walk to a new one.
            fresh = uid in reviews and _shows_pay(reviews[uid])
            if fresh and draft is not None and draft.get("rate"):
                continue
            try:
                for text in ("/order", SENDER, RECIPIENT, "1 lb"):
                    await harness.say(uid, text, timeout=3)
                [rates] = await harness.say(uid, "6x6x6", timeout=3)
                replies = await harness.press(uid, rates, data=rates.buttons[0][1])
                reviews[uid] = replies[-1]
            except (TimeoutError, LookupError, ValueError):
                reviews.pop(uid, None)  # interrupted by a kill; tried again next round

    await prepare_reviews()

    stars_paid: set[str] = set()
    card_paid: set[str] = set()
    oxapay_paid: set[str] = set()
    for round_no in range(KILLS):
        emulator = harness.emulator
        payments = services().payments
        pending: list[Any] = []
        for uid in rng.sample(CUSTOMERS, 4):
            kind = rng.choice(["stars", "oxapay", "pay", "refund"])
            if kind == "stars" and round_no % 2:
                # A card payment: its successful_payment update is the only signal (no
                # history to read), so the inbox must not lose it to a kill.
                created = await payments.create_card_topup(uid, 2_000)
                provider_charge = f"pi-{round_no}-{uid}"
                card_paid.add(provider_charge)
                emulator.send_successful_payment(
                    uid,
                    currency="USD",
                    total_amount=created.minor_amount,
                    payload=created.payload,
                    charge_id=f"tg-{round_no}-{uid}",
                    provider_payment_charge_id=provider_charge,
                )
            elif kind == "stars":
                created = await payments.create_stars_topup(uid, 2_000)
                charge = f"ch-{round_no}-{uid}"
                stars_paid.add(charge)
                # Telegram records the charge (getStarTransactions lists it) and sends the
                # update; a kill may lose the update, never the charge.
                emulator.send_successful_payment(
                    uid,
                    currency="XTR",
                    total_amount=created.stars,
                    payload=created.payload,
                    charge_id=charge,
                )
            elif kind == "oxapay":
                created = await payments.create_oxapay_topup(uid, 3_000)
                payment = await mongo.db["payments"].find_one(
                    {"_id": ObjectId(created.payment_id)}
                )
                assert payment is not None
                oxapay_paid.add(payment["provider_ref"])
                pending.append(oxapay.mark_paid(payment["provider_ref"]))
            elif kind == "pay" and uid in reviews and _shows_pay(reviews[uid]):
                review = reviews.pop(uid)
                emulator.press_button(uid, review.message_id, review.callback_data_for("Pay"))
            else:
                order = await mongo.db["orders"].find_one({"user_id": uid, "status": "purchased"})
                if order is not None:
                    emulator.push_update("message", _raw_message(uid, {"text": "/refund"}))
                    number = str(order["tracking_number"])
                    emulator.push_update("message", _raw_message(uid, {"text": number}))
        tasks = [asyncio.ensure_future(action) for action in pending]
        if spots is None or round_no % 5 == 4:
            await asyncio.sleep(rng.uniform(0.0, 0.15))  # a kill at a random instant
        else:
            spots.arm(rng.randint(1, 24))  # a kill at a random write of the worker
            await spots.wait_due(timeout=0.5)
        if spots is not None:
            spots.before_kill()
        await harness.crash()
        await asyncio.gather(*tasks, return_exceptions=True)
        await start()
        await prepare_reviews()
        if round_no % 4 == 3:
            await services().refunds.process_due()

    # The surviving worker settles what the kills interrupted: callbacks lost with a web
    # server are reconciled, stuck purchases resolved, refunds checked, labels delivered.
    await asyncio.sleep(0.5)
    clock.advance(minutes=10)
    await services().payments.reconcile()
    await services().purchase.recover_stuck()
    await services().refunds.process_due()
    await services().refunds.process_due()
    clock.advance(minutes=2)  # labels completed by the recovery are due for delivery now
    app = harness.application
    assert app.job_queue is not None
    for name in ("payments:reconcile-stars", "orders:deliver-labels"):
        [job] = app.job_queue.get_jobs_by_name(name)
        await job.run(app)

    _, mismatches = await storage.ledger.audit()
    assert mismatches == []
    credits = Counter(
        entry["_id"].split(":", 2)[2]
        for entry in await mongo.db["ledger"].find({"kind": "topup"}).to_list(None)
        if not entry["_id"].startswith("seed:")
    )
    assert all(count == 1 for count in credits.values())
    for charge in stars_paid:
        # Telegram's list of Stars transactions catches payments whose update died with
        # a worker: every one is credited, once.
        assert credits.get(charge, 0) == 1, charge
    for charge in card_paid:
        # No history for provider payments: the update itself survived every kill.
        assert credits.get(charge, 0) == 1, charge
    for track in oxapay_paid:
        assert credits.get(track, 0) == 1, track  # OxaPay money is never lost
    bought = (
        await mongo.db["orders"].find({"status": {"$in": ["purchased", "refunded"]}}).to_list(None)
    )
    assert bought, "the scenario bought no label"
    for order in bought:
        assert order.get("label_delivered_at") is not None, order["_id"]
        # The receipt goes out at most once however often the label was delivered.
        title = f"Receipt · order {short_order_id(order['_id'])}"
        sent = harness.emulator.sent_messages(int(order["user_id"]))
        assert sum(1 for m in sent if title in m.content) <= 1, order["_id"]
    assert not [uid for uid, n in handled.items() if n > 1], "an update was handled twice"
    await harness.close()
    if spots is not None:
        print(f"kills: {spots.kills}, between two writes: {spots.between_writes}")  # noqa: T201
        assert spots.between_writes > spots.kills // 2, (spots.between_writes, spots.kills)
