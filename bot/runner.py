"""Start and stop the application the way ``run_polling`` does, but under our control.

The CLI, the demo and the end-to-end tests share this, so they all run the production
lifecycle: initialize → post_init → start (handlers, jobs) → polling … stop → shutdown →
post_shutdown.

With a ``PollerLease`` (passed in, or attached to ``bot_data`` by ``post_init``) polling
follows the lease: a standby runs everything except polling and starts polling when it
gains the lease; a leader that loses it stops polling at once and competes again. Without
a lease the application always polls (tests, demo, a single instance).

Before it starts polling, an instance drains the updates it is still processing, flushes
persistence and reloads every persistent conversation's positions from MongoDB: while it
stood by, the other instance moved users through their conversations, and PTB otherwise
loads positions only once, in ``initialize()``.

``UpdatesRequest`` wraps the ``get_updates_request`` of ``ApplicationBuilder``: it records
the time of each successful ``getUpdates`` (readiness), counts 409 Conflicts, and when a
lease is attached it refuses to send ``getUpdates`` while the lease is not held (a fence
against a paused process that wakes up after its lease was taken over).

``wait_for_dependencies`` (used by ``run_until_signalled`` when given a ``StartupRetry``)
waits for MongoDB, then the Bot API, before anything else starts: an outage at start-up
is retried in-process with a doubling, capped, logged and bounded backoff instead of
exiting, so supervisord sees a running process rather than a crash loop (``FATAL``).
A refusal that no retry can fix (wrong token, wrong credentials, an index conflict) stops
at once with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge
from pymongo.errors import ConfigurationError, ConnectionFailure, OperationFailure, PyMongoError
from telegram import Update
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import ConversationHandler
from telegram.ext._utils.trackingdict import TrackingDict
from telegram.request import BaseRequest, RequestData

from bot.lease import PollerLease, attach_lease, lease_of
from bot.update_processor import PerChatUpdateProcessor

if TYPE_CHECKING:
    from bot.application import BotApplication

_LOGGER = logging.getLogger(__name__)

GET_UPDATES = Counter(
    "bot_telegram_get_updates_total",
    "getUpdates requests by result (ok, conflict, error, fenced)",
    ["result"],
)
GET_UPDATES_LAST_SUCCESS = Gauge(
    "bot_telegram_get_updates_last_success_timestamp_seconds",
    "Unix time of the last successful getUpdates answer",
)
POLLING_ACTIVE = Gauge("bot_polling_active", "1 while this instance polls Telegram")
CONFLICTS = Counter(
    "bot_telegram_conflicts_total", "409 Conflict answers to getUpdates (another poller)"
)

_CONTROLLER_KEY = "polling_controller"
_MONITOR_KEY = "updates_monitor"
_EMPTY_UPDATES = b'{"ok":true,"result":[]}'


def _polling_error(error: TelegramError) -> None:
    if isinstance(error, Conflict):
        _LOGGER.error(
            "INCIDENT: Telegram answered 409 Conflict: another process is polling this bot "
            "token (or a webhook is set). Only one instance may poll: stop the other one."
        )
    else:
        _LOGGER.warning("polling failed, retrying with backoff: %s", error)


# -------------------------------------------------------------------- getUpdates monitor


class UpdatesRequest(BaseRequest):
    """Delegating ``get_updates_request``: health of long polling plus the lease fence.

    ``ApplicationBuilder().get_updates_request(UpdatesRequest(HTTPXRequest(...)))``; then
    ``attach_updates_monitor(application.bot_data, request)`` so readiness and the runner
    find it.
    """

    def __init__(
        self, inner: BaseRequest, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self._monotonic = monotonic
        self.gate: Callable[[], bool] | None = None
        self.first_attempt: float | None = None  # monotonic
        self.last_success: float | None = None  # monotonic
        self.successes = 0
        self.conflicts = 0
        self.failures = 0
        self.fenced = 0
        # Called with each successful getUpdates body before PTB sees it (bot/inbox.py).
        self.on_batch: Callable[[bytes], Awaitable[None]] | None = None

    @property
    def read_timeout(self) -> float | None:
        return self.inner.read_timeout

    async def initialize(self) -> None:
        await self.inner.initialize()

    async def shutdown(self) -> None:
        await self.inner.shutdown()

    def seconds_since_success(self) -> float | None:
        if self.last_success is None:
            return None
        return self._monotonic() - self.last_success

    def seconds_since_first_attempt(self) -> float | None:
        if self.first_attempt is None:
            return None
        return self._monotonic() - self.first_attempt

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self.gate is not None and not self.gate():
            # Not the lease holder: answer "no updates" locally instead of asking Telegram
            # (which would 409 the real leader). Wait a little so a loop cannot spin.
            self.fenced += 1
            GET_UPDATES.labels(result="fenced").inc()
            timeout = request_data.parameters.get("timeout") if request_data else None
            if isinstance(timeout, int | float) and timeout > 0:
                await asyncio.sleep(min(float(timeout), 1.0))
            return HTTPStatus.OK, _EMPTY_UPDATES
        if self.first_attempt is None:
            self.first_attempt = self._monotonic()
        try:
            code, payload = await self.inner.do_request(
                url,
                method,
                request_data,
                read_timeout=read_timeout,
                write_timeout=write_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failures += 1
            GET_UPDATES.labels(result="error").inc()
            raise
        if HTTPStatus.OK <= code < 300 and self.on_batch is not None:
            try:
                await self.on_batch(payload)
            except Exception:
                self.failures += 1
                GET_UPDATES.labels(result="error").inc()
                raise
        if HTTPStatus.OK <= code < 300:
            self.successes += 1
            self.last_success = self._monotonic()
            GET_UPDATES.labels(result="ok").inc()
            GET_UPDATES_LAST_SUCCESS.set(time.time())
        elif code == HTTPStatus.CONFLICT:
            self.conflicts += 1
            GET_UPDATES.labels(result="conflict").inc()
            CONFLICTS.inc()
        else:
            self.failures += 1
            GET_UPDATES.labels(result="error").inc()
        return code, payload


def attach_updates_monitor(bot_data: Any, monitor: UpdatesRequest) -> None:
    bot_data.extras[_MONITOR_KEY] = monitor


def updates_monitor_of(bot_data: Any) -> UpdatesRequest | None:
    extras = getattr(bot_data, "extras", None)
    monitor = extras.get(_MONITOR_KEY) if isinstance(extras, dict) else None
    return monitor if isinstance(monitor, UpdatesRequest) else None


# -------------------------------------------------------------------- takeover


async def drain_updates(application: BotApplication, *, limit_seconds: float = 10.0) -> bool:
    """Waits until no fetched update is queued or running; False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    processor = application.update_processor

    def busy() -> int:
        # Updates waiting for their chat's turn hold no slot yet: count them too.
        if isinstance(processor, PerChatUpdateProcessor):
            return processor.in_flight
        return processor.current_concurrent_updates

    while application.update_queue.qsize() or busy():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def resync_conversations(application: BotApplication) -> int:
    """Replaces in-memory conversation positions with the persisted ones, in place.

    PTB loads positions only in ``initialize()``. The state map is refilled without
    write-tracking (as PTB's own loading does), so nothing is written back, and positions
    that ended on the other instance are dropped. Returns the live conversations.
    """
    persistence = application.persistence
    if persistence is None:
        return 0
    live = 0
    for handlers in application.handlers.values():
        for handler in handlers:
            if not (
                isinstance(handler, ConversationHandler) and handler.persistent and handler.name
            ):
                continue
            positions = handler._conversations  # noqa: SLF001 - the map PTB flushes from
            if not isinstance(positions, TrackingDict):
                _LOGGER.warning("cannot reload conversation %s: unknown state map", handler.name)
                continue
            stored = await persistence.get_conversations(handler.name)
            positions.data.clear()
            positions.update_no_track(
                {key: state for key, state in stored.items() if state != handler.END}
            )
            live += len(positions)
    return live


async def prepare_takeover(application: BotApplication) -> None:
    if not await drain_updates(application):
        _LOGGER.warning("updates still running after 10 s; taking over anyway")
    if application.persistence is not None:
        await application.update_persistence()
    live = await resync_conversations(application)
    _LOGGER.info("conversation positions reloaded from MongoDB: %d live", live)
    await replay_inbox(application)


async def replay_inbox(application: BotApplication) -> None:
    inbox = application.bot_data.extras.get("inbox")
    if inbox is not None:
        await inbox.replay(application)


# -------------------------------------------------------------------- polling controller


class PollingController:
    """Keeps ``updater`` polling exactly while the lease is held."""

    def __init__(
        self, application: BotApplication, lease: PollerLease, *, poll_timeout: int
    ) -> None:
        self.application = application
        self.lease = lease
        self.poll_timeout = poll_timeout
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.lease.add_listener(self._on_lease_change)
        try:
            await self.reconcile()
        except Exception:
            _LOGGER.exception("could not start polling; retrying")
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="polling-controller")

    async def close(self) -> None:
        """Stops polling for good (shutdown); the lease is left to the caller."""
        self._closed = True
        self.lease.remove_listener(self._on_lease_change)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.reconcile()

    def _on_lease_change(self, held: bool) -> None:
        self._wake.set()

    async def _run(self) -> None:
        retry: float | None = None
        while True:
            if retry is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(retry):
                        await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                _LOGGER.exception("could not switch polling; retrying")
                retry = min((retry or 0.5) * 2, 30.0)
            else:
                retry = None

    async def reconcile(self) -> None:
        updater = self.application.updater
        assert updater is not None
        async with self._lock:
            while True:
                want = self.lease.held and not self._closed
                if want == updater.running:
                    return
                if want:
                    await prepare_takeover(self.application)
                    if not self.lease.held:
                        continue
                    await updater.start_polling(
                        timeout=self.poll_timeout,
                        allowed_updates=Update.ALL_TYPES,
                        error_callback=_polling_error,
                    )
                    POLLING_ACTIVE.set(1)
                    _LOGGER.info("polling started (lease token %s)", self.lease.token)
                else:
                    await updater.stop()
                    POLLING_ACTIVE.set(0)
                    _LOGGER.info("polling stopped")


def _controller_of(application: BotApplication) -> PollingController | None:
    controller = application.bot_data.extras.get(_CONTROLLER_KEY)
    return controller if isinstance(controller, PollingController) else None


# -------------------------------------------------------------------- start-up retries

Sleep = Callable[[float], Awaitable[None]]

# Server answers that mean "not now" rather than "no": elections, shutdowns, networking.
_MONGO_TRANSIENT_CODES = frozenset(
    {6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436}
)


@dataclass(frozen=True)
class StartupRetry:
    """Backoff for dependencies that are down at start-up: ``initial_delay``, doubling up to
    ``max_delay``; after ``max_attempts`` failed attempts of one dependency, give up."""

    initial_delay: float = 1.0
    max_delay: float = 30.0
    max_attempts: int = 40

    def delay(self, failures: int) -> float:
        return float(min(self.initial_delay * 2 ** (failures - 1), self.max_delay))


class StartupFailed(Exception):
    """Start-up cannot go on; the message is one line without secrets.

    ``config_error``: a retry cannot fix it (the operator must change something).
    """

    def __init__(self, message: str, *, config_error: bool = False) -> None:
        super().__init__(message)
        self.config_error = config_error


class _Retry(Exception):
    def __init__(self, cause: BaseException, *, at_least: float = 0.0) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.at_least = at_least


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:200] + "…"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def interruptible_sleep(stop: asyncio.Event) -> Sleep:
    """``asyncio.sleep`` that returns early when ``stop`` is set (SIGTERM during start-up)."""

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()

    return sleep


async def _connect_mongo(application: BotApplication) -> None:
    storage = application.bot_data.require_storage()
    try:
        await storage.start()
    except ConnectionFailure as exc:  # unreachable, no primary (election), timeouts
        raise _Retry(exc) from exc
    except OperationFailure as exc:
        if exc.code in _MONGO_TRANSIENT_CODES:
            raise _Retry(exc) from exc
        raise StartupFailed(
            f"MongoDB refused the start-up: {_describe(exc)} (code {exc.code}); check "
            "MONGO_URL and the user's roles (readWrite and dbAdmin on the database)",
            config_error=exc.code in (13, 18),
        ) from None
    except ConfigurationError as exc:
        raise StartupFailed(
            f"MONGO_URL is not usable: {_describe(exc)}", config_error=True
        ) from None
    except PyMongoError as exc:
        raise StartupFailed(f"MongoDB failed at start-up: {_describe(exc)}") from None


async def _connect_telegram(application: BotApplication) -> None:
    try:
        # getMe; PTB's own initialize() then finds the bot initialised.
        await application.bot.initialize()
    except InvalidToken:
        # PTB's message contains the token: never shown.
        raise StartupFailed(
            "the Bot API rejected TELEGRAM_BOT_TOKEN (getMe answered 401/404): check the "
            "token and telegram.base_url",
            config_error=True,
        ) from None
    except RetryAfter as exc:
        wait = exc.retry_after
        seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        raise _Retry(exc, at_least=seconds) from exc
    except (BadRequest, Forbidden) as exc:
        raise StartupFailed(
            f"the Bot API refused getMe: {_describe(exc)}", config_error=True
        ) from None
    except NetworkError as exc:  # connection refused, timeouts, 5xx
        raise _Retry(exc) from exc
    except TelegramError as exc:
        raise StartupFailed(f"the Bot API failed at start-up: {_describe(exc)}") from None


async def _unless_stopped(
    attempt: Callable[[], Awaitable[None]], stop: asyncio.Event | None
) -> bool:
    """Runs one attempt; a stop meanwhile cancels it (an unanswered connect can take the
    whole connect timeout, longer than supervisord waits after SIGTERM). False if stopped."""
    if stop is None:
        await attempt()
        return True

    async def run() -> None:
        await attempt()

    task = asyncio.create_task(run())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        task.result()  # raises what the attempt raised
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False


async def _with_retries(
    what: str,
    attempt: Callable[[], Awaitable[None]],
    retry: StartupRetry,
    sleep: Sleep,
    stop: asyncio.Event | None,
) -> bool:
    failures = 0
    while True:
        if stop is not None and stop.is_set():
            return False
        try:
            if not await _unless_stopped(attempt, stop):
                return False
        except _Retry as exc:
            failures += 1
            if failures >= retry.max_attempts:
                raise StartupFailed(
                    f"{what} still unreachable after {failures} attempts: "
                    f"{_describe(exc.cause)}"
                ) from None
            delay = max(retry.delay(failures), exc.at_least)
            _LOGGER.warning(
                "start-up: %s unreachable (attempt %d/%d): %s; retrying in %.1f s",
                what,
                failures,
                retry.max_attempts,
                _describe(exc.cause),
                delay,
            )
            await sleep(delay)
            continue
        if failures:
            _LOGGER.info("start-up: %s reachable after %d failed attempts", what, failures)
        return True


async def wait_for_dependencies(
    application: BotApplication,
    retry: StartupRetry,
    *,
    sleep: Sleep = asyncio.sleep,
    stop: asyncio.Event | None = None,
) -> bool:
    """Connects MongoDB (and ensures indexes), then the Bot API (getMe), retrying outages.

    True when both answered; False when ``stop`` was set meanwhile. Raises
    ``StartupFailed`` (one line) after ``retry.max_attempts`` or on a refusal, and
    ``storage.indexes.IndexConflict`` for an index only an operator should change.
    """
    if not await _with_retries(
        "MongoDB", lambda: _connect_mongo(application), retry, sleep, stop
    ):
        return False
    return await _with_retries(
        "the Telegram Bot API", lambda: _connect_telegram(application), retry, sleep, stop
    )


async def abandon_start(application: BotApplication) -> None:
    """Releases what a start-up that never completed may hold (HTTP sessions, MongoDB)."""
    requests: list[BaseRequest] = [application.bot.request]
    monitor = updates_monitor_of(application.bot_data)
    if monitor is not None:
        requests.append(monitor)
    for request in requests:
        with contextlib.suppress(Exception):
            await request.shutdown()
    storage = application.bot_data.storage
    if storage is not None:
        with contextlib.suppress(Exception):
            await storage.close()


# -------------------------------------------------------------------- lifecycle


async def start_application(
    application: BotApplication, *, poll_timeout: int = 30, lease: PollerLease | None = None
) -> None:
    """Starts everything; polls at once without a lease, else only while it is held."""
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    assert application.updater is not None
    data = application.bot_data
    if lease is not None:
        attach_lease(data, lease)
    lease = lease_of(data)
    if lease is None:
        await replay_inbox(application)
        await application.updater.start_polling(
            timeout=poll_timeout,
            allowed_updates=Update.ALL_TYPES,
            error_callback=_polling_error,
        )
        POLLING_ACTIVE.set(1)
        await application.start()
        return
    monitor = updates_monitor_of(data)
    if monitor is not None:
        monitor.gate = lease.is_held
    await application.start()
    controller = PollingController(application, lease, poll_timeout=poll_timeout)
    data.extras[_CONTROLLER_KEY] = controller
    await lease.start()
    await controller.start()
    if not lease.held:
        _LOGGER.info("standby: %s", lease.describe())


async def stop_application(application: BotApplication, *, release_lease: bool = True) -> None:
    """Stops polling, lets running updates and jobs finish, flushes, releases, closes.

    The lease is released only after the last update was handled and persisted, so the
    instance taking over reloads up-to-date conversation positions.
    ``release_lease=False`` leaves the lease to expire, as a crashed process would.
    """
    controller = _controller_of(application)
    if controller is not None:
        await controller.close()
        application.bot_data.extras.pop(_CONTROLLER_KEY, None)
    if application.updater is not None and application.updater.running:
        await application.updater.stop()
    POLLING_ACTIVE.set(0)
    if application.running:
        await application.stop()
    await flush_before_handover(application)
    lease = lease_of(application.bot_data)
    if lease is not None:
        await lease.stop(release=release_lease)
    await application.shutdown()
    if application.post_shutdown is not None:
        await application.post_shutdown(application)


async def flush_before_handover(application: BotApplication) -> None:
    """Writes what a standby reads when it takes over: conversation positions (PTB's
    ``stop()`` does not flush them, ``shutdown()`` does, which comes after the lease is
    released) and the inbox's handled ids. A failure is logged; the handover goes on."""
    if application.persistence is not None:
        await application.update_persistence()  # errors go to the error handler
    inbox = application.bot_data.extras.get("inbox")
    if inbox is not None:
        try:
            await inbox.flush()
        except Exception:
            _LOGGER.warning("could not clean up the inbox before the handover", exc_info=True)


async def run_until_signalled(
    application: BotApplication,
    *,
    poll_timeout: int,
    lease: PollerLease | None = None,
    startup: StartupRetry | None = None,
    stop: asyncio.Event | None = None,
    sleep: Sleep | None = None,
) -> None:
    """Runs until SIGTERM/SIGINT (or ``stop``). With ``startup``, MongoDB and the Bot API
    are waited for first (``wait_for_dependencies``); a signal meanwhile ends it cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if startup is not None:
        try:
            ready = await wait_for_dependencies(
                application, startup, sleep=sleep or interruptible_sleep(stop), stop=stop
            )
        except BaseException:
            await abandon_start(application)
            raise
        if not ready:
            _LOGGER.info("stopped during start-up")
            await abandon_start(application)
            return
    await start_application(application, poll_timeout=poll_timeout, lease=lease)
    _LOGGER.info("bot is running")
    try:
        await stop.wait()
    finally:
        _LOGGER.info("stopping: finishing running updates and flushing sessions")
        await stop_application(application)
