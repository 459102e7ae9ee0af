import asyncio
from collections import Counter
from datetime import timedelta

from services.notifications import DeliveryError, Notifier, OutboxDelivery
from storage.client import Mongo
from storage.indexes import IndexOptions, ensure_indexes
from storage.outbox import OutboxMessage, OutboxRepo
from tests.conftest import FakeClock, YieldingDb


async def _setup(mongo: Mongo, clock: FakeClock) -> tuple[Notifier, OutboxDelivery]:
    await ensure_indexes(mongo.db, IndexOptions())
    repo = OutboxRepo(mongo.db)
    notifier = Notifier(repo, admin_ids=[1, 2], dedup_window=timedelta(minutes=10), clock=clock)
    delivery = OutboxDelivery(repo, max_attempts=3, batch_size=10, clock=clock)
    return notifier, delivery


async def test_alert_deduplicated_within_window(mongo: Mongo, clock: FakeClock) -> None:
    notifier, delivery = await _setup(mongo, clock)
    assert await notifier.alert_admins("boom", dedup_key="error:X", windowed=True) == 2
    assert await notifier.alert_admins("boom", dedup_key="error:X", windowed=True) == 0
    clock.advance(minutes=11)
    assert await notifier.alert_admins("boom", dedup_key="error:X", windowed=True) == 2
    sent: list[int] = []

    async def send(message: OutboxMessage) -> None:
        sent.append(message.chat_id)

    report = await delivery.deliver_due(send)
    assert report.delivered == 4 and sorted(sent) == [1, 1, 2, 2]
    assert (await delivery.deliver_due(send)).delivered == 0


async def test_retry_with_backoff_then_give_up(mongo: Mongo, clock: FakeClock) -> None:
    notifier, delivery = await _setup(mongo, clock)
    await notifier.notify_user(5, "hello", dedup_key="n1")
    attempts = 0

    async def failing(message: OutboxMessage) -> None:
        nonlocal attempts
        attempts += 1
        raise DeliveryError("telegram down")

    assert (await delivery.deliver_due(failing)).retried == 1
    assert (await delivery.deliver_due(failing)).retried == 0  # not due yet
    clock.advance(seconds=6)
    assert (await delivery.deliver_due(failing)).retried == 1
    clock.advance(seconds=11)
    assert (await delivery.deliver_due(failing)).failed == 1
    clock.advance(hours=1)
    assert (await delivery.deliver_due(failing)) == (await delivery.deliver_due(failing))
    assert attempts == 3
    depth, _ = await delivery.stats()
    assert depth == 0


async def test_telegram_outage_delays_but_never_drops(mongo: Mongo, clock: FakeClock) -> None:
    notifier, delivery = await _setup(mongo, clock)
    await notifier.notify_user(5, "paid", dedup_key="p1")
    delivered: list[str] = []
    outage = True

    async def send(message: OutboxMessage) -> None:
        if outage:
            raise DeliveryError("429", retry_after=30)
        delivered.append(message.text)

    await delivery.deliver_due(send)
    clock.advance(seconds=10)
    await delivery.deliver_due(send)
    assert delivered == []
    outage = False
    clock.advance(seconds=25)
    await delivery.deliver_due(send)
    assert delivered == ["paid"]


async def test_a_slow_send_does_not_let_another_run_take_the_rest_of_the_batch(
    mongo: Mongo, clock: FakeClock
) -> None:
    """The first send of a run takes longer than a claim used to last; another run (the
    next job run, or a second instance) meanwhile must not send what the first still will."""
    notifier, delivery = await _setup(mongo, clock)
    other = OutboxDelivery(OutboxRepo(mongo.db), max_attempts=3, batch_size=10, clock=clock)
    for i in range(6):
        await notifier.notify_user(100 + i, f"m{i}", dedup_key=f"slow{i}")
    sent: list[str] = []

    async def quick(message: OutboxMessage) -> None:
        sent.append(message.text)

    async def slow(message: OutboxMessage) -> None:
        if not sent:
            clock.advance(seconds=120)  # a slow send (Telegram pausing us)
            await other.deliver_due(quick)
        sent.append(message.text)

    await delivery.deliver_due(slow)
    assert sorted(sent) == [f"m{i}" for i in range(6)]  # each once
    assert (await delivery.deliver_due(quick)).delivered == 0


async def test_two_deliverers_at_once_never_send_a_message_twice(clock: FakeClock) -> None:
    mongo = Mongo.memory("outbox-race")
    await ensure_indexes(mongo.db, IndexOptions())
    db = YieldingDb(mongo.db, seed=3)
    notifier = Notifier(
        OutboxRepo(db), admin_ids=[1, 2, 3], dedup_window=timedelta(minutes=10), clock=clock
    )
    for i in range(12):
        await notifier.alert_admins(f"alert {i}", dedup_key=f"race{i}")
        await notifier.notify_user(50 + i, f"notice {i}", dedup_key=f"race{i}")
    sent: Counter[str] = Counter()

    async def send(message: OutboxMessage) -> None:
        await asyncio.sleep(0)
        clock.advance(seconds=7)
        sent[f"{message.chat_id}:{message.text}"] += 1

    deliverers = [
        OutboxDelivery(OutboxRepo(db), max_attempts=3, batch_size=50, clock=clock)
        for _ in range(2)
    ]
    reports = await asyncio.gather(*(d.deliver_due(send) for d in deliverers))
    assert len(sent) == 48 and set(sent.values()) == {1}
    assert sum(r.delivered for r in reports) == 48


async def test_a_deliverer_that_must_stop_claims_nothing_more(
    mongo: Mongo, clock: FakeClock
) -> None:
    """A standby sends nothing; a leader losing the lease stops at once and leaves the rest
    unclaimed, so the new leader delivers them without waiting for a claim to expire."""
    notifier, delivery = await _setup(mongo, clock)
    for i in range(5):
        await notifier.notify_user(200 + i, f"n{i}", dedup_key=f"stop{i}")
    sent: list[str] = []

    async def send(message: OutboxMessage) -> None:
        sent.append(message.text)

    assert (await delivery.deliver_due(send, should_stop=lambda: True)).delivered == 0
    assert sent == []
    report = await delivery.deliver_due(send, should_stop=lambda: len(sent) >= 2)
    assert report.delivered == 2
    assert (await delivery.deliver_due(send)).delivered == 3  # no claim left behind
    assert sorted(sent) == [f"n{i}" for i in range(5)]
