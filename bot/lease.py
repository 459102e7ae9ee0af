"""``PollerLease``: decides which instance polls Telegram (single poller, hot standby).

Each instance runs one ``PollerLease`` task. It tries to acquire the ``locks/poller`` lease
every ``renew_seconds``; once held it renews it at the same interval. The lease lasts
``lease_seconds`` in MongoDB, but this instance considers it lost earlier, at
``lease_seconds - renew_seconds`` after the last successful write (measured on the local
monotonic clock), so it has stopped polling before any standby can take over even with a
few seconds of clock skew between hosts.

Any failure to renew (refused because the token moved on, a MongoDB error, a timeout, or
the local deadline passing) makes the lease *lost* immediately: listeners are told, the
runner stops polling, and the task goes back to competing. Re-acquiring a lease this
instance still holds in MongoDB succeeds at once (with a new token), so a transient error
costs one polling restart, not a whole lease period.

``held`` is what jobs that move money check (``holds_lease(context.bot_data)``): a standby
keeps handling callbacks but must not run those jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge

from storage.locks import POLLER_LEASE, Lease, LeaseState, LocksRepo

_LOGGER = logging.getLogger(__name__)

LEASE_HELD = Gauge("bot_poller_lease_held", "1 while this instance holds the poller lease")
LEASE_TOKEN = Gauge("bot_poller_lease_token", "Fencing token of the lease this instance holds")
LEASE_CHANGES = Counter(
    "bot_poller_lease_changes_total", "Poller lease gained/lost by this instance", ["event"]
)
LEASE_ERRORS = Counter(
    "bot_poller_lease_errors_total", "MongoDB errors and timeouts while acquiring or renewing"
)

JOBS_SKIPPED = Counter(
    "bot_jobs_skipped_on_standby_total", "Leader-only job runs skipped on a standby", ["job"]
)

Listener = Callable[[bool], None]
_Ctx = TypeVar("_Ctx")
WallClock = Callable[[], datetime]

_EXTRAS_KEY = "poller_lease"


def default_holder() -> str:
    """``host:pid:random``: unique per process, readable in the ``locks`` document."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PollerLease:
    def __init__(
        self,
        store: LocksRepo,
        *,
        holder: str | None = None,
        name: str = POLLER_LEASE,
        lease_seconds: float = 30.0,
        renew_seconds: float = 5.0,
        clock: WallClock = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if renew_seconds <= 0 or lease_seconds < 3 * renew_seconds - 1e-9:
            raise ValueError("the lease must last at least three renew intervals")
        self.store = store
        self.holder = holder or default_holder()
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self._ttl = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._monotonic = monotonic
        self._lease: Lease | None = None
        self._deadline = 0.0
        self._listeners: list[Listener] = []
        self._gained = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._task: asyncio.Task[None] | None = None
        self.observed: LeaseState | None = None  # the other holder, seen while on standby
        self.last_error: str | None = None

    # ---------------------------------------------------------------- state

    @property
    def held(self) -> bool:
        """True while the lease is ours and its local deadline has not passed."""
        return self._lease is not None and self._monotonic() < self._deadline

    def is_held(self) -> bool:
        return self.held

    @property
    def token(self) -> int | None:
        """The fencing token of the lease we hold (it grows with every acquisition)."""
        return self._lease.token if self.held and self._lease is not None else None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def describe(self) -> str:
        """One line for readiness details and logs."""
        if self.held:
            return f"held by this instance ({self.holder}, token {self.token})"
        other = self.observed
        if other is not None and other.holder is not None:
            return f"standby: held by {other.holder} until {other.expires_at:%H:%M:%S}Z"
        if self.last_error:
            return f"not held: {self.last_error}"
        return "not held"

    def add_listener(self, listener: Listener) -> None:
        """``listener(True)`` when gained, ``listener(False)`` when lost; must not block."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def wait_held(self) -> None:
        await self._gained.wait()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Makes the first attempt now (so a free lease is held on return), then loops."""
        if self.running:
            return
        await self.step()
        self._task = asyncio.create_task(self._run(), name=f"lease:{self.name}")

    async def stop(self, *, release: bool = True) -> None:
        """Stops competing; ``release=False`` leaves the lease to expire (a crash)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lease = self._lease
        if lease is None:
            return
        self._set_lost("stopped")
        if release:
            try:
                async with asyncio.timeout(self.renew_seconds):
                    await self.store.release(lease, now=self._clock())
                _LOGGER.info("poller lease released (token %d)", lease.token)
            except Exception as exc:  # noqa: BLE001 - it expires by itself anyway
                _LOGGER.warning("could not release the poller lease: %r", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            await self.step()

    async def step(self) -> bool:
        """One acquire-or-renew round; returns ``held`` afterwards."""
        started = self._monotonic()
        now = self._clock()
        lease = self._lease
        try:
            if lease is None:
                async with asyncio.timeout(self.renew_seconds):
                    acquired = await self.store.acquire(
                        self.name, self.holder, now=now, ttl=self._ttl
                    )
                    if acquired is None:
                        self.observed = await self.store.state(self.name)
                self.last_error = None
                if acquired is not None:
                    self._set_held(acquired, started)
                return self.held
            remaining = self._deadline - started
            if remaining <= 0:
                self._set_lost("the local lease deadline passed before renewal")
                return False
            async with asyncio.timeout(min(self.renew_seconds, remaining)):
                renewed = await self.store.renew(lease, now=now, ttl=self._ttl)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means "not provably ours"
            LEASE_ERRORS.inc()
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if self._lease is not None:
                self._set_lost(f"renewal failed: {self.last_error}")
            else:
                _LOGGER.warning("could not acquire the poller lease: %s", self.last_error)
            return False
        if renewed is None:
            self._set_lost("taken over by another instance or released")
            return False
        self._lease = renewed
        self._deadline = started + self.lease_seconds - self.renew_seconds
        return True

    # ---------------------------------------------------------------- transitions

    def _set_held(self, lease: Lease, started: float) -> None:
        self._lease = lease
        self._deadline = started + self.lease_seconds - self.renew_seconds
        self.observed = None
        LEASE_HELD.set(1)
        LEASE_TOKEN.set(lease.token)
        LEASE_CHANGES.labels(event="gained").inc()
        _LOGGER.info(
            "poller lease gained: this instance polls Telegram (holder %s, token %d)",
            lease.holder,
            lease.token,
        )
        self._lost.clear()
        self._gained.set()
        self._notify(True)

    def _set_lost(self, reason: str) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        LEASE_HELD.set(0)
        LEASE_CHANGES.labels(event="lost").inc()
        if reason == "stopped":
            _LOGGER.info("poller lease given up (token %d): shutting down", lease.token)
        else:
            _LOGGER.warning("poller lease lost (token %d): %s; polling stops", lease.token, reason)
        self._gained.clear()
        self._lost.set()
        self._notify(False)

    def _notify(self, held: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(held)
            except Exception:
                _LOGGER.exception("poller lease listener failed")


# -------------------------------------------------------------------- wiring helpers


def attach_lease(bot_data: Any, lease: PollerLease) -> None:
    """Makes the lease reachable from ``context.bot_data`` (jobs, readiness, runner)."""
    bot_data.extras[_EXTRAS_KEY] = lease


def lease_of(bot_data: Any) -> PollerLease | None:
    extras = getattr(bot_data, "extras", None)
    lease = extras.get(_EXTRAS_KEY) if isinstance(extras, dict) else None
    return lease if isinstance(lease, PollerLease) else None


def holds_lease(bot_data: Any) -> bool:
    """Gate for jobs that move money: True on the leader, or when no lease is configured."""
    lease = lease_of(bot_data)
    return lease is None or lease.held


def leader_only(callback: Callable[[_Ctx], Awaitable[None]]) -> Callable[[_Ctx], Awaitable[None]]:
    """Wraps a job callback so it runs only where ``holds_lease`` is true.

    ``queue.run_repeating(leader_only(reconcile_payments_job), ...)``: a standby skips the
    run (counted in ``bot_jobs_skipped_on_standby_total``) instead of moving money twice.
    """

    @functools.wraps(callback)
    async def job(context: _Ctx) -> None:
        if holds_lease(getattr(context, "bot_data", None)):
            await callback(context)
        else:
            JOBS_SKIPPED.labels(job=getattr(callback, "__name__", "job")).inc()

    return job
