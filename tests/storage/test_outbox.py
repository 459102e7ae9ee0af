from datetime import timedelta

from services.notifications import DeliveryError, Notifier, OutboxDelivery
from storage.client import Mongo
from storage.indexes import IndexOptions, ensure_indexes
from storage.outbox import OutboxMessage, OutboxRepo
from tests.conftest import FakeClock


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
