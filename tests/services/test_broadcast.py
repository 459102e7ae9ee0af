"""Broadcast delivery without Telegram: rate, once per user, 429/403, stop/resume, orphans."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bot.settings import TELEGRAM_BULK_MAX_RATE, BroadcastSettings
from services.audit import AuditService
from services.broadcast import (
    BroadcastConfig,
    BroadcastError,
    BroadcastService,
    Outgoing,
    Progress,
    SendOutcome,
    SendResult,
)
from storage.audit import AuditRepo
from storage.broadcasts import BroadcastsRepo, delivery_id
from storage.client import Mongo
from storage.indexes import IndexOptions, ensure_indexes
from storage.users import UsersRepo
from tests.conftest import FakeClock

ROOT = Path(__file__).resolve().parents[2]


# -- the production cap ---------------------------------------------------------------------


def test_rate_above_telegrams_limit_is_refused_by_settings() -> None:
    assert TELEGRAM_BULK_MAX_RATE == 30
    assert BroadcastSettings().rate_per_second == 25
    assert BroadcastSettings(rate_per_second=30).rate_per_second == 30
    for bad in (31, 250, 0, -1):
        with pytest.raises(ValidationError):
            BroadcastSettings(rate_per_second=bad)
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    assert 0 < config["broadcast"]["rate_per_second"] <= TELEGRAM_BULK_MAX_RATE


# -- helpers --------------------------------------------------------------------------------


class Recorder:
    """A fake Telegram: records each send with its monotonic start time."""

    def __init__(self, script: dict[int, list[SendResult]] | None = None) -> None:
        self.calls: list[tuple[float, Outgoing]] = []
        self.answered: list[tuple[float, Outgoing, SendResult]] = []
        self.script = script or {}

    async def __call__(self, message: Outgoing) -> SendResult:
        self.calls.append((time.monotonic(), message))
        await asyncio.sleep(0.001)
        queue = self.script.get(message.user_id)
        result = queue.pop(0) if queue else SendResult(SendOutcome.SENT)
        self.answered.append((time.monotonic(), message, result))
        return result

    def delivered(self) -> Counter[int]:
        return Counter(m.user_id for _, m in self.calls)


async def make_service(
    mongo: Mongo, clock: FakeClock, users: int, *, rate: float = 200, batch: int = 50
) -> tuple[BroadcastService, BroadcastsRepo]:
    db = mongo.db
    await ensure_indexes(db, IndexOptions(ttl_monitor=False))
    now = clock()
    if users:
        await db["users"].insert_many(
            [
                {"_id": uid, "language": "en" if uid % 2 else "ru", "created_at": now}
                for uid in range(1, users + 1)
            ]
        )
    repo = BroadcastsRepo(db)
    config = BroadcastConfig(
        rate_per_second=rate,
        progress_interval=0.2,
        batch_size=batch,
        max_concurrency=8,
        max_text_length=4000,
    )
    audit = AuditService(AuditRepo(db), clock=clock)
    return BroadcastService(repo, UsersRepo(db), config, audit=audit, clock=clock), repo


def never() -> bool:
    return False


async def no_progress(progress: Progress) -> None:
    return None


async def start(service: BroadcastService, **kwargs: Any) -> Any:
    texts = kwargs.pop("texts", {"*": "hello"})
    return await service.start(1, kind="manual", texts=texts, admin_language="en", **kwargs)


# -- tests ----------------------------------------------------------------------------------


async def test_every_user_once_at_the_configured_rate(mongo: Mongo, clock: FakeClock) -> None:
    service, repo = await make_service(mongo, clock, 120, rate=100)
    broadcast = await start(service, texts={"en": "hello", "ru": "привет"})
    send = Recorder()
    reports: list[Progress] = []

    async def progress(p: Progress) -> None:
        reports.append(p)

    assert await service.run(send, should_stop=never, on_progress=progress) == 1
    assert send.delivered() == Counter(range(1, 121))
    starts = [t for t, _ in send.calls]
    # Send slots are 1/rate apart; after a stall one send may catch up (two in a row), never
    # three: any three consecutive sends span at least one interval. (A GC pause between a
    # turn and its send can shift one timestamp, hence the percentile.)
    spans = [c - a for a, c in zip(starts, starts[2:], strict=False)]
    assert sorted(spans)[len(spans) // 10] >= 1 / 100 * 0.9
    assert starts[-1] - starts[0] >= (len(starts) - 2) / 100 * 0.95  # never above the rate
    for index in range(len(starts)):  # about `rate` sends at most in any one-second window
        window = [t for t in starts[index:] if t - starts[index] < 1.0]
        assert len(window) <= 100 + 2
    texts = {m.user_id: m.text for _, m in send.calls}
    assert texts[1] == "hello" and texts[2] == "привет"
    assert reports[-1].done and reports[-1].counts["sent"] == 120
    doc = await repo.get(broadcast["_id"])
    assert doc is not None and doc["status"] == "done"


async def test_retry_after_pauses_everything_and_delivers_once(
    mongo: Mongo, clock: FakeClock
) -> None:
    service, _ = await make_service(mongo, clock, 20, rate=200)
    await start(service)
    send = Recorder({5: [SendResult(SendOutcome.RETRY, retry_after=0.3)]})
    await service.run(send, should_stop=never, on_progress=no_progress)
    attempts = send.delivered()
    assert attempts[5] == 2 and all(attempts[u] == 1 for u in range(1, 21) if u != 5)
    # Sends already in flight when the 429 arrives may start meanwhile (as with a real
    # round trip); from its answer on, nothing starts until the pause is over.
    answered = next(t for t, m, r in send.answered if r.outcome is SendOutcome.RETRY)
    later = [t for t, _ in send.calls if t > answered]
    assert later and later[0] - answered >= 0.29  # nothing went out during the pause


async def test_blocked_users_are_marked_and_skipped_next_time(
    mongo: Mongo, clock: FakeClock
) -> None:
    service, repo = await make_service(mongo, clock, 10)
    users = mongo.db["users"]
    await users.update_one({"_id": 2}, {"$set": {"notify_opt_out": True}})
    await users.update_one({"_id": 3}, {"$set": {"blocked": True}})
    first = await start(service)
    send = Recorder({4: [SendResult(SendOutcome.BLOCKED, error="Forbidden")]})
    await service.run(send, should_stop=never, on_progress=no_progress)
    assert set(send.delivered()) == {1, 4, 5, 6, 7, 8, 9, 10}
    counts = await repo.counts(first["_id"])
    assert (counts["sent"], counts["failed"], counts["skipped"]) == (7, 1, 2)
    marked = await users.find_one({"_id": 4})
    assert marked is not None and marked["bot_blocked_at"] == clock()

    second = await start(service)
    send = Recorder()
    await service.run(send, should_stop=never, on_progress=no_progress)
    assert set(send.delivered()) == {1, 5, 6, 7, 8, 9, 10}
    skipped = await mongo.db["broadcast_deliveries"].find_one(
        {"_id": delivery_id(second["_id"], 4)}
    )
    assert skipped is not None and skipped["reason"] == "bot_blocked"


async def test_a_stop_releases_claims_and_the_next_run_resumes(
    mongo: Mongo, clock: FakeClock
) -> None:
    service, repo = await make_service(mongo, clock, 60, rate=300, batch=40)
    broadcast = await start(service)
    send = Recorder()
    stop_after: Callable[[], bool] = lambda: len(send.calls) >= 25  # noqa: E731
    await service.run(send, should_stop=stop_after, on_progress=no_progress)
    counts = await repo.counts(broadcast["_id"])
    assert counts["claimed"] == counts["sending"] == 0  # nothing left half-claimed
    assert 25 <= counts["sent"] < 60 and counts["pending"] == 60 - counts["sent"]
    await service.run(send, should_stop=never, on_progress=no_progress)
    assert send.delivered() == Counter(range(1, 61))


async def test_orphans_of_a_crash_are_never_sent_twice(mongo: Mongo, clock: FakeClock) -> None:
    service, repo = await make_service(mongo, clock, 10)
    broadcast = await start(service)
    bid = broadcast["_id"]
    # A crashed run: the audience was listed, 1-3 claimed (never attempted), 4 mid-send.
    await repo.add_audience_batch(broadcast, limit=100, now=clock())
    await repo.transition(bid, from_statuses=["preparing"], to_status="sending", now=clock())
    deliveries = mongo.db["broadcast_deliveries"]
    for uid, status in ((1, "claimed"), (2, "claimed"), (3, "claimed"), (4, "sending")):
        await deliveries.update_one(
            {"_id": delivery_id(bid, uid)}, {"$set": {"status": status, "claimed_at": clock()}}
        )
    send = Recorder()
    await service.run(send, should_stop=never, on_progress=no_progress)
    assert set(send.delivered()) == {5, 6, 7, 8, 9, 10}  # orphans wait for the lease to lapse
    clock.advance(minutes=6)
    await service.run(send, should_stop=never, on_progress=no_progress)
    assert send.delivered() == Counter({u: 1 for u in range(1, 11) if u != 4})
    interrupted = await deliveries.find_one({"_id": delivery_id(bid, 4)})
    assert interrupted is not None and interrupted["reason"] == "interrupted"
    doc = await repo.get(bid)
    assert doc is not None and doc["status"] == "done"


async def test_photo_drafts_confirm_once_and_one_runner_per_process(
    mongo: Mongo, clock: FakeClock
) -> None:
    service, _ = await make_service(mongo, clock, 5)
    with pytest.raises(BroadcastError):
        service.check_text("   ", with_photo=False)
    with pytest.raises(BroadcastError):
        service.check_text("x" * 1025, with_photo=True)
    assert service.check_text("", with_photo=True) == ""
    draft = await service.create_draft(1, texts={"*": "caption"}, photo_file_id="PHOTO")
    bid = str(draft["_id"])
    assert await service.confirm(1, bid, progress_chat_id=1, progress_message_id=2) is not None
    assert await service.confirm(1, bid, progress_chat_id=1, progress_message_id=2) is None
    assert await service.cancel(bid) is None  # started: no longer cancellable
    send = Recorder()
    first, second = await asyncio.gather(
        service.run(send, should_stop=never, on_progress=no_progress),
        service.run(send, should_stop=never, on_progress=no_progress),
    )
    assert sorted([first, second]) == [0, 1]
    assert {m.photo_file_id for _, m in send.calls} == {"PHOTO"}
    assert send.delivered() == Counter(range(1, 6))


async def test_listing_survives_a_stop_between_batches(mongo: Mongo, clock: FakeClock) -> None:
    service, repo = await make_service(mongo, clock, 25, batch=10)
    broadcast = await start(service)
    listed, complete = await repo.add_audience_batch(broadcast, limit=10, now=clock())
    assert (listed, complete) == (10, False)
    # the same batch again (a run that stopped before moving the cursor): listed once
    await mongo.db["broadcasts"].update_one(
        {"_id": broadcast["_id"]}, {"$set": {"cursor_user_id": None}}
    )
    await repo.add_audience_batch(broadcast, limit=10, now=clock())
    assert await mongo.db["broadcast_deliveries"].count_documents({}) == 10
    send = Recorder()
    await service.run(send, should_stop=never, on_progress=no_progress)
    assert send.delivered() == Counter(range(1, 26))
    assert clock() - broadcast["created_at"] < timedelta(seconds=1)
