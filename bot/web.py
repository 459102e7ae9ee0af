"""The worker's own HTTP server: ``/healthz``, ``/readyz``, ``/metrics`` and feature routes.

It runs inside the bot's event loop (aiohttp), bound to 127.0.0.1 by default.

* ``GET /healthz``: liveness. Answers as long as the event loop runs; it never looks at
  Telegram or MongoDB, so an outage of either never gets a healthy process restarted.
* ``GET /readyz``: readiness. Runs every named check concurrently, each under its own
  timeout; ``200`` when all pass, ``503`` with JSON naming the failing ones otherwise.
* ``GET /metrics``: the default Prometheus registry in text format.
* Later features add routes with ``add_route`` (e.g. ``POST /callbacks/oxapay``) before
  ``start()``. Request bodies are capped at ``max_body_bytes`` (413 above it).

A check is a callable returning ``None``/``True`` (ok), a ``str`` (ok, with a detail),
``False`` (failing) or an awaitable of those; raising (e.g. ``CheckFailed("why")``) fails it
with the message. ``application_checks`` builds the standard set for the bot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from bot.lease import lease_of
from bot.logging import redactor

if TYPE_CHECKING:
    from bot.runner import UpdatesRequest

_LOGGER = logging.getLogger(__name__)

CheckResult = bool | str | None
Check = Callable[[], CheckResult | Awaitable[CheckResult]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

READINESS = Gauge(
    "bot_readiness_check_ok", "Result of the last /readyz evaluation per check", ["check"]
)

DEFAULT_MAX_BODY_BYTES = 64 * 1024


class CheckFailed(Exception):
    """Raised by a readiness check with a one-line reason."""


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    ok: bool
    detail: str
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "duration_ms": round(self.duration_ms, 1)}


class WebServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        checks: Mapping[str, Check] | None = None,
        check_timeout: float = 2.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.host = host
        self._port = port
        self.check_timeout = check_timeout
        self.max_body_bytes = max_body_bytes
        self._checks: dict[str, tuple[Check, float]] = {}
        for name, check in (checks or {}).items():
            self.add_check(name, check)
        self._app = web.Application(
            client_max_size=max_body_bytes, middlewares=[self._limit_body]
        )
        self._app.router.add_get("/healthz", self._healthz)
        self._app.router.add_get("/readyz", self._readyz)
        self._app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- registration

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Registers a feature endpoint; only before ``start()`` (aiohttp freezes routes)."""
        if self._runner is not None:
            raise RuntimeError(f"add_route({method} {path}) after the web server started")
        self._app.router.add_route(method.upper(), path, handler)

    def add_check(self, name: str, check: Check, *, timeout: float | None = None) -> None:
        self._checks[name] = (check, timeout if timeout is not None else self.check_timeout)

    @property
    def check_names(self) -> list[str]:
        return list(self._checks)

    # ---------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); the configured one before ``start()``."""
        if self._runner is not None and self._runner.addresses:
            return int(self._runner.addresses[0][1])
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        _LOGGER.info("web server listening on %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            _LOGGER.info("web server stopped")

    # ---------------------------------------------------------------- readiness

    async def evaluate(self) -> list[CheckOutcome]:
        """Runs every check concurrently; never raises."""
        outcomes = await asyncio.gather(
            *(
                self._run_check(name, check, timeout)
                for name, (check, timeout) in self._checks.items()
            )
        )
        for outcome in outcomes:
            READINESS.labels(check=outcome.name).set(1 if outcome.ok else 0)
        return list(outcomes)

    @staticmethod
    async def _run_check(name: str, check: Check, limit: float) -> CheckOutcome:
        started = time.perf_counter()
        ok, detail = True, ""
        try:
            async with asyncio.timeout(limit):
                result = check()
                if inspect.isawaitable(result):
                    result = await result
            if result is False:
                ok, detail = False, "check failed"
            elif isinstance(result, str):
                detail = result
        except TimeoutError:
            ok, detail = False, f"timed out after {limit:g}s"
        except CheckFailed as exc:
            ok, detail = False, str(exc)
        except Exception as exc:  # noqa: BLE001 - a failing dependency is a failing check
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        elapsed = (time.perf_counter() - started) * 1000
        return CheckOutcome(name, ok, redactor(detail)[:300], elapsed)

    # ---------------------------------------------------------------- handlers

    @web.middleware
    async def _limit_body(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return web.json_response({"error": "request body too large"}, status=413)
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.StreamResponse:
        outcomes = await self.evaluate()
        failing = [o.name for o in outcomes if not o.ok]
        body = {
            "status": "not_ready" if failing else "ready",
            "failing": failing,
            "checks": {o.name: o.to_dict() for o in outcomes},
        }
        if failing:
            _LOGGER.info("not ready: %s", ", ".join(failing))
        return web.json_response(body, status=503 if failing else 200)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


# -------------------------------------------------------------------- standard checks


def mongo_check(ping: Callable[[], Awaitable[object]]) -> Check:
    async def check() -> CheckResult:
        await ping()
        return None

    return check


def lease_check(bot_data: Any) -> Check:
    """Ready only on the instance that holds the poller lease (a standby reports 503)."""

    def check() -> CheckResult:
        lease = lease_of(bot_data)
        if lease is None:
            return "no lease configured (single instance)"
        if not lease.held:
            raise CheckFailed(lease.describe())
        return lease.describe()

    return check


def updates_check(monitor: UpdatesRequest, max_age_seconds: float) -> Check:
    """The last successful ``getUpdates`` answer is at most ``max_age_seconds`` old.

    Before the first answer, the first request counts as long as it is younger than that.
    """

    def check() -> CheckResult:
        age = monitor.seconds_since_success()
        if age is None:
            # A fresh poller: its first long poll answers only after poll_timeout seconds
            # when nothing happens, so give it the same allowance.
            waiting = monitor.seconds_since_first_attempt()
            if waiting is None:
                raise CheckFailed("no getUpdates sent yet")
            if waiting > max_age_seconds:
                raise CheckFailed(f"no successful getUpdates in {waiting:.0f}s since start")
            return f"first getUpdates in flight for {waiting:.1f}s"
        if age > max_age_seconds:
            raise CheckFailed(
                f"last successful getUpdates {age:.0f}s ago (limit {max_age_seconds:g}s)"
            )
        return f"last successful getUpdates {age:.1f}s ago"

    return check


def scheduler_check(application: Any) -> Check:
    def check() -> CheckResult:
        queue = application.job_queue
        if queue is None or not queue.scheduler.running:
            raise CheckFailed("the job scheduler is not running")
        return f"{len(queue.jobs())} jobs scheduled"

    return check


def application_checks(
    application: Any, *, updates_max_age_seconds: float = 90.0
) -> dict[str, Check]:
    """``mongo``, ``poller_lease``, ``telegram_polling`` and ``job_scheduler`` for the bot.

    Everything is looked up when a probe runs, so this can be built in ``post_init``
    before the runner attaches the lease.
    """
    from bot.runner import updates_monitor_of

    data = application.bot_data

    async def ping() -> object:
        return await data.require_storage().mongo.ping()

    def polling() -> CheckResult | Awaitable[CheckResult]:
        monitor = updates_monitor_of(data)
        if monitor is None:
            updater = application.updater
            if updater is None or not updater.running:
                raise CheckFailed("not polling")
            return "polling (no getUpdates monitor installed)"
        return updates_check(monitor, updates_max_age_seconds)()

    return {
        "mongo": mongo_check(ping),
        "poller_lease": lease_check(data),
        "telegram_polling": polling,
        "job_scheduler": scheduler_check(application),
    }
