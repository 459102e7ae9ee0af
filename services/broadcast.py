"""Broadcasts: a message to every customer, at a bounded rate, once per user, resumable.

State lives in MongoDB (``storage/broadcasts.py``): the broadcast document and one
delivery document per recipient. The runner

1. lists the audience (users in ``_id`` order from a stored cursor; opted-out users, users
   who blocked the bot and blocked accounts are listed as ``skipped``);
2. claims pending deliveries, sends them paced to ``rate_per_second`` overall (send slots
   are ``1 / rate`` apart; after a stall one send may catch up, never more; a chat gets
   one message per broadcast and broadcasts run one at a time), and records each outcome;
3. pauses everything for ``retry_after`` when Telegram answers 429 (that recipient goes
   back in the queue: nothing was delivered), marks users who answer 403
   (``users.bot_blocked_at``) so later broadcasts skip them;
4. reports progress through a callback at most every ``progress_interval`` seconds (from
   the counts at the start of the run plus this run's outcomes: recounting every delivery
   on each report would cost as much as the sends; the final report counts them).

A stop (shutdown, restart) lets in-flight sends finish and returns unsent claims to the
queue, so the next run resumes exactly where this one stopped. A crash can leave the sends
that were in flight in ``sending``: they may have been delivered, so they are never sent
again (failed, reason ``interrupted``, after ``ORPHAN_AFTER``); claimed deliveries that
were not attempted go back to the queue. Nothing here imports Telegram: the caller passes
a ``Sender`` that maps Telegram's answers to ``SendResult``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId

from services.admin import parse_object_id
from services.audit import AuditService
from services.clock import Clock, utc_now
from storage.broadcasts import BroadcastsRepo, Delivery
from storage.client import Document
from storage.users import UsersRepo

_LOGGER = logging.getLogger(__name__)

MAX_CAPTION = 1024
# Pause between two broadcasts so one chat never gets two messages within a second.
GAP_BETWEEN_BROADCASTS = 1.0
# A delivery claimed longer ago than this by a run that is gone is an orphan of a crash.
ORPHAN_AFTER = timedelta(minutes=5)
# Longest single sleep, so a stop request is noticed quickly even during a long pause.
_SLEEP_STEP = 0.25
# Sends that may follow each other without a gap after a stall (see ``_take_turn``).
_BURST = 2


class SendOutcome(StrEnum):
    SENT = "sent"
    BLOCKED = "blocked"  # 403: the user blocked the bot
    FAILED = "failed"  # refused or outcome unknown: never retried (at most once)
    RETRY = "retry"  # 429: not delivered, try again after ``retry_after``


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    retry_after: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Outgoing:
    user_id: int
    text: str
    photo_file_id: str | None


Sender = Callable[[Outgoing], Awaitable[SendResult]]


@dataclass(frozen=True)
class Progress:
    broadcast: Document
    counts: dict[str, int]
    rate: float  # messages per second measured in this run
    seconds_left: float | None
    done: bool

    @property
    def total(self) -> int:
        return sum(self.counts.values())


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass(frozen=True)
class BroadcastConfig:
    rate_per_second: float
    progress_interval: float
    batch_size: int
    max_concurrency: int
    max_text_length: int


class BroadcastError(ValueError):
    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass
class _Run:
    started: float
    interval: float
    should_stop: Callable[[], bool]
    # Counts at the start of this run; progress adds this run's outcomes to them, so a
    # report does not count the deliveries again (the final report counts them anew).
    base: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    pause_until: float = 0.0
    last_progress: float = 0.0
    next_send: float = 0.0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Sends take turns here, so their starts are spaced by ``interval`` whatever the
    # scheduling of the tasks (FIFO: asyncio.Lock wakes waiters in order).
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


def text_for(broadcast: Document, language: str) -> str:
    texts: dict[str, str] = broadcast["texts"]
    return texts.get(language) or texts.get("*") or next(iter(texts.values()))


class BroadcastService:
    def __init__(
        self,
        repo: BroadcastsRepo,
        users: UsersRepo,
        config: BroadcastConfig,
        *,
        audit: AuditService,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self._audit = audit
        self._users = users
        self._config = config
        self._clock = clock
        self._monotonic = monotonic
        self._lock = asyncio.Lock()

    @property
    def config(self) -> BroadcastConfig:
        return self._config

    # -- composing ------------------------------------------------------------------------

    def check_text(self, text: str, *, with_photo: bool) -> str:
        text = (text or "").strip()
        limit = MAX_CAPTION if with_photo else self._config.max_text_length
        if not text and not with_photo:
            raise BroadcastError("empty")
        if len(text) > limit:
            raise BroadcastError("too_long", length=len(text), limit=limit)
        return text

    async def create_draft(
        self,
        actor: int,
        *,
        texts: dict[str, str],
        photo_file_id: str | None = None,
        kind: str = "manual",
        admin_language: str = "en",
    ) -> Document:
        now = self._clock()
        return await self._repo.create(
            {
                "kind": kind,
                "texts": texts,
                "photo_file_id": photo_file_id,
                "status": "draft",
                "created_by": actor,
                "admin_language": admin_language,
                "created_at": now,
                "updated_at": now,
                "cursor_user_id": None,
            }
        )

    async def get(self, broadcast_id: str) -> Document | None:
        oid = parse_object_id(broadcast_id)
        return await self._repo.get(oid) if oid is not None else None

    async def confirm(
        self, actor: int, broadcast_id: str, *, progress_chat_id: int, progress_message_id: int
    ) -> Document | None:
        """``draft`` → ``preparing`` (once: a second tap finds it no longer a draft), audited
        as ``broadcast.start`` keyed by the broadcast."""
        oid = parse_object_id(broadcast_id)
        if oid is None:
            return None
        now = self._clock()
        started = await self._repo.transition(
            oid,
            from_statuses=["draft"],
            to_status="preparing",
            now=now,
            fields={
                "confirmed_by": actor,
                "confirmed_at": now,
                "progress_chat_id": progress_chat_id,
                "progress_message_id": progress_message_id,
            },
        )
        if started is not None:
            await self._audit_start(actor, started, describe(started))
        return started

    async def _audit_start(self, actor: int, broadcast: Document, after: dict[str, Any]) -> None:
        bid = broadcast["_id"]
        await self._audit.record(
            actor, "broadcast.start", f"broadcast:{bid}", after=after, key=f"broadcast.start:{bid}"
        )

    async def cancel(self, broadcast_id: str) -> Document | None:
        oid = parse_object_id(broadcast_id)
        if oid is None:
            return None
        return await self._repo.transition(
            oid, from_statuses=["draft"], to_status="cancelled", now=self._clock()
        )

    async def start(
        self,
        actor: int,
        *,
        kind: str,
        texts: dict[str, str],
        admin_language: str,
        progress_chat_id: int | None = None,
        progress_message_id: int | None = None,
    ) -> Document:
        """A broadcast the system sends without a preview (maintenance notices), audited."""
        draft = await self.create_draft(
            actor, texts=texts, kind=kind, admin_language=admin_language
        )
        now = self._clock()
        started = await self._repo.transition(
            draft["_id"],
            from_statuses=["draft"],
            to_status="preparing",
            now=now,
            fields={
                "confirmed_by": actor,
                "confirmed_at": now,
                "progress_chat_id": progress_chat_id,
                "progress_message_id": progress_message_id,
            },
        )
        assert started is not None
        await self._audit_start(actor, started, {"kind": kind})
        return started

    async def set_progress_message(
        self, broadcast_id: ObjectId, chat_id: int, message_id: int
    ) -> None:
        await self._repo.set_fields(
            broadcast_id, {"progress_chat_id": chat_id, "progress_message_id": message_id}
        )

    async def counts(self, broadcast_id: ObjectId) -> dict[str, int]:
        return await self._repo.counts(broadcast_id)

    async def has_work(self) -> bool:
        return await self._repo.oldest_active() is not None

    # -- delivering -----------------------------------------------------------------------

    async def run(
        self,
        send: Sender,
        *,
        should_stop: Callable[[], bool],
        on_progress: ProgressCallback,
    ) -> int:
        """Delivers active broadcasts, oldest first, until none is left or a stop is asked.

        One runner per process (a second call returns at once); returns the number of
        broadcasts finished.
        """
        if self._lock.locked():
            return 0
        finished = 0
        last_done = 0.0
        async with self._lock:
            while not should_stop():
                broadcast = await self._repo.oldest_active()
                if broadcast is None:
                    break
                if finished and await self._sleep(last_done + GAP_BETWEEN_BROADCASTS, should_stop):
                    break
                if not await self._run_one(broadcast, send, should_stop, on_progress):
                    break
                finished += 1
                last_done = self._monotonic()
        return finished

    async def _run_one(
        self,
        broadcast: Document,
        send: Sender,
        should_stop: Callable[[], bool],
        on_progress: ProgressCallback,
    ) -> bool:
        """Works on one broadcast; True when it is done."""
        bid = broadcast["_id"]
        await self._repo.recover_orphans(bid, claimed_before=self._clock() - ORPHAN_AFTER)
        while broadcast["status"] == "preparing":
            if should_stop():
                return False
            _, complete = await self._repo.add_audience_batch(
                broadcast, limit=self._config.batch_size, now=self._clock()
            )
            if complete:
                await self._repo.transition(
                    bid, from_statuses=["preparing"], to_status="sending", now=self._clock()
                )
            reloaded = await self._repo.get(bid)
            if reloaded is None:
                return False
            broadcast = reloaded
        if broadcast["status"] != "sending":
            return bool(broadcast["status"] == "done")
        return await self._send_all(broadcast, send, should_stop, on_progress)

    async def _send_all(
        self,
        broadcast: Document,
        send: Sender,
        should_stop: Callable[[], bool],
        on_progress: ProgressCallback,
    ) -> bool:
        base = await self._repo.counts(broadcast["_id"])
        now_m = self._monotonic()
        run = _Run(
            started=now_m,
            base=base,
            interval=1.0 / self._config.rate_per_second,
            should_stop=should_stop,
            last_progress=now_m,
            next_send=now_m,
        )
        try:
            return await self._send_loop(broadcast, send, on_progress, run)
        except asyncio.CancelledError:
            # The process is being torn down: in-flight sends die with it (their
            # deliveries stay in ``sending`` and are never sent again).
            for task in list(run.tasks):
                task.cancel()
            raise

    async def _send_loop(
        self, broadcast: Document, send: Sender, on_progress: ProgressCallback, run: _Run
    ) -> bool:
        bid = broadcast["_id"]
        # Claim about five seconds of work at a time: few claims (each one is a query the
        # sends wait behind), and a stop still releases little.
        claim_size = max(1, min(self._config.batch_size, int(self._config.rate_per_second * 5)))
        semaphore = asyncio.Semaphore(self._config.max_concurrency)
        stopped = False
        while not stopped:
            if run.should_stop():
                break
            # A fresh token per claim: the previous batch may still be in flight.
            batch = await self._repo.claim(
                bid, limit=claim_size, token=ObjectId(), now=self._clock()
            )
            if not batch:
                await self._drain(run)
                counts = await self._repo.counts(bid)
                if counts["pending"]:
                    continue  # rate-limited recipients went back in the queue
                if counts["claimed"] or counts["sending"]:
                    return False  # another runner's claims, or a crash's: a later run decides
                now = self._clock()
                done = await self._repo.transition(
                    bid, from_statuses=["sending"], to_status="done", now=now,
                    fields={"finished_at": now},
                )
                await self._report(on_progress, done or broadcast, run, counts, done=True)
                return True
            for index, delivery in enumerate(batch):
                await semaphore.acquire()
                if run.should_stop():
                    semaphore.release()
                    await self._repo.release([d.id for d in batch[index:]])
                    stopped = True
                    break
                task = asyncio.create_task(
                    self._deliver(broadcast, delivery, send, semaphore, run)
                )
                run.tasks.add(task)
                task.add_done_callback(run.tasks.discard)
                if self._monotonic() - run.last_progress >= self._config.progress_interval:
                    await self._report(on_progress, broadcast, run)
        await self._drain(run)
        await self._report(on_progress, broadcast, run)
        return False

    async def _take_turn(self, run: _Run) -> bool:
        """Waits until this send may start; False when a stop was asked meanwhile."""
        async with run.turn:
            while True:  # re-read the target: a 429 may set a pause while we wait
                if run.should_stop():
                    return False
                # ``next_send`` is the send's slot on the schedule (GCRA's theoretical
                # arrival time); a send may go up to ``_BURST - 1`` intervals before it.
                early = run.interval * (_BURST - 1)
                paused = run.pause_until > run.next_send - early
                left = max(run.next_send - early, run.pause_until) - self._monotonic()
                if left <= 0:
                    break
                await asyncio.sleep(min(left, _SLEEP_STEP))
            if paused:  # after a 429 pause, resume at the plain rate, without a catch-up
                run.next_send = self._monotonic() + early
            # Slots follow the schedule, not the moment the loop woke us: late wake-ups do
            # not add up, a stall is made up by at most ``_BURST - 1`` sends in a row, and
            # any window of W seconds holds at most ``rate * W + _BURST`` sends.
            run.next_send = max(run.next_send, self._monotonic()) + run.interval
            return True

    async def _deliver(
        self,
        broadcast: Document,
        delivery: Delivery,
        send: Sender,
        semaphore: asyncio.Semaphore,
        run: _Run,
    ) -> None:
        outgoing = Outgoing(
            user_id=delivery.user_id,
            text=text_for(broadcast, delivery.language),
            photo_file_id=broadcast.get("photo_file_id"),
        )
        try:
            if not await self._repo.begin(delivery.id, now=self._clock()):
                return  # no longer ours: never send twice
            # The turn comes last so nothing runs between it and the send: the starts of
            # two sends are never closer than ``interval``.
            if not await self._take_turn(run):
                await self._repo.release([delivery.id])  # stopping: never attempted
                return
            result = await send(outgoing)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unknown outcome is never retried
            _LOGGER.warning("broadcast send failed: %s", type(exc).__name__, exc_info=True)
            result = SendResult(SendOutcome.FAILED, error=type(exc).__name__)
        finally:
            semaphore.release()
        now = self._clock()
        if result.outcome is SendOutcome.SENT:
            await self._repo.finish(delivery.id, status="sent", now=now)
            run.sent += 1
        elif result.outcome is SendOutcome.RETRY:
            run.pause_until = max(run.pause_until, self._monotonic() + result.retry_after)
            await self._repo.release([delivery.id])
        elif result.outcome is SendOutcome.BLOCKED:
            await self._repo.finish(delivery.id, status="failed", now=now, reason="bot_blocked")
            await self._users.mark_bot_blocked(delivery.user_id, now)
            run.failed += 1
        else:
            await self._repo.finish(
                delivery.id, status="failed", now=now, reason=(result.error or "failed")[:200]
            )
            run.failed += 1

    @staticmethod
    def _estimate(run: _Run) -> dict[str, int]:
        """Progress without recounting: the run's start counts plus its own outcomes."""
        base = run.base
        total = sum(base.values())
        sent = base.get("sent", 0) + run.sent
        failed = base.get("failed", 0) + run.failed
        skipped = base.get("skipped", 0)
        counts = dict.fromkeys(base, 0)
        counts.update(sent=sent, failed=failed, skipped=skipped)
        counts["pending"] = max(total - sent - failed - skipped, 0)
        return counts

    async def _drain(self, run: _Run) -> None:
        if run.tasks:
            await asyncio.gather(*list(run.tasks), return_exceptions=True)

    async def _sleep(self, until: float, should_stop: Callable[[], bool]) -> bool:
        """Sleeps until ``until`` (monotonic); True when a stop was asked meanwhile."""
        while True:
            left = until - self._monotonic()
            if left <= 0:
                return False
            if should_stop():
                return True
            await asyncio.sleep(min(left, _SLEEP_STEP))

    async def _report(
        self,
        on_progress: ProgressCallback,
        broadcast: Document,
        run: _Run,
        counts: dict[str, int] | None = None,
        *,
        done: bool = False,
    ) -> None:
        run.last_progress = self._monotonic()
        if counts is None:
            counts = self._estimate(run)
        elapsed = max(self._monotonic() - run.started, 1e-6)
        measured = run.sent / elapsed
        left = counts["pending"] + counts["claimed"] + counts["sending"]
        speed = measured if measured > 0 else self._config.rate_per_second
        progress = Progress(
            broadcast=broadcast,
            counts=counts,
            rate=measured,
            seconds_left=0.0 if done else left / speed,
            done=done,
        )
        try:
            await on_progress(progress)
        except Exception:  # noqa: BLE001 - progress display never stops delivery
            _LOGGER.warning("broadcast progress update failed", exc_info=True)


def describe(broadcast: Document) -> dict[str, Any]:
    """The fields an audit entry keeps about a broadcast."""
    return {
        "broadcast_id": str(broadcast["_id"]),
        "kind": broadcast.get("kind"),
        "photo": bool(broadcast.get("photo_file_id")),
        "languages": sorted(broadcast.get("texts", {})),
    }
