"""Resilient HTTP client base shared by the provider clients.

One lazily created `aiohttp.ClientSession` per client, explicit timeouts, default TLS
verification, tenacity retries for idempotent calls only, a circuit breaker per
client instance and Prometheus metrics. Nothing here logs keys or request bodies.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from providers.errors import (
    CircuitOpenError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderResponseError,
    ProviderUnavailable,
)
from providers.metrics import (
    PROVIDER_CALL_LATENCY,
    PROVIDER_CALLS,
    PROVIDER_CIRCUIT_STATE,
    PROVIDER_RETRIES,
)

__all__ = [
    "BaseProviderClient",
    "CircuitBreaker",
    "CircuitState",
    "HttpResult",
    "MalformedResponse",
    "StateChangeCallback",
    "decode_json",
    "encode_json",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Expected answers (a 4xx business error, a lookup miss): not worth a warning.
_QUIET_OUTCOMES = frozenset({"rejected", "not_found"})


# --------------------------------------------------------------------------- JSON


def encode_json(value: Any) -> bytes:
    """JSON-encodes `value`, writing Decimals as exact JSON numbers; floats are refused."""
    return _encode(value).encode("utf-8")


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite Decimal in payload")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are not allowed in provider payloads; use Decimal")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


class MalformedResponse(ValueError):
    """A response body that does not have the documented shape."""


def decode_json(data: bytes) -> Any:
    """Parses JSON with every non-integer number as an exact Decimal."""
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise MalformedResponse("body is not valid JSON") from None


class _StopWhenWaitOver(stop_base):
    """Stops retrying when the wait before the next attempt would exceed ``max_wait``: a
    caller with someone waiting would rather give up than wait that long."""

    def __init__(self, wait: Callable[[RetryCallState], float], max_wait: float) -> None:
        self._wait = wait
        self._max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._wait(retry_state) > self._max_wait


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parses a Retry-After header (delta seconds or HTTP date) into seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


# --------------------------------------------------------------------------- parsing helpers


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResponse(f"{what} is not an object")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResponse(f"{what} is not a list")
    return value


def opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedResponse(f"{key} is not a string")
    if isinstance(value, str | int | Decimal):
        return str(value)
    raise MalformedResponse(f"{key} is not a string")


def req_str(obj: Mapping[str, Any], key: str) -> str:
    value = opt_str(obj, key)
    if value is None:
        raise MalformedResponse(f"{key} is missing")
    return value


def opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedResponse(f"{key} is not an integer")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MalformedResponse(f"{key} is not an integer") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise MalformedResponse(f"{key} is not an integer")
    return int(number)


def opt_bool(obj: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    raise MalformedResponse(f"{key} is not a boolean")


def to_amount(value: Any, what: str) -> Decimal:
    """An exact Decimal from a JSON number (int/Decimal) or numeric string."""
    if isinstance(value, bool) or value is None:
        raise MalformedResponse(f"{what} is not a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise MalformedResponse(f"{what} is not a number") from None
    else:
        raise MalformedResponse(f"{what} is not a number")
    if not result.is_finite():
        raise MalformedResponse(f"{what} is not finite")
    return result


def opt_iso_datetime(obj: Mapping[str, Any], key: str) -> datetime | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedResponse(f"{key} is not a date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MalformedResponse(f"{key} is not ISO 8601") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def opt_unix_datetime(obj: Mapping[str, Any], key: str) -> datetime | None:
    seconds = opt_int(obj, key)
    if seconds is None or seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


# --------------------------------------------------------------------------- circuit breaker


class CircuitState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


_GAUGE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}

StateChangeCallback = Callable[[str, CircuitState, CircuitState], object]
"""`(provider_name, old, new)`; may be a plain function or return an awaitable."""


class CircuitBreaker:
    """Closed -> open after `failure_threshold` consecutive failures -> half-open once
    `recovery_timeout` seconds passed (one trial call at a time) -> closed on success."""

    def __init__(
        self,
        provider: str,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        clock: Clock = time.monotonic,
        on_state_change: StateChangeCallback | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self._provider = provider
        self._threshold = failure_threshold
        self._recovery_timeout = recovery_timeout
        self._clock = clock
        self._on_state_change = on_state_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._tasks: set[asyncio.Future[Any]] = set()
        PROVIDER_CIRCUIT_STATE.labels(provider).set(0)

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def before_call(self, operation: str | None = None) -> None:
        """Raises CircuitOpenError when the call must not be attempted."""
        if self._state is CircuitState.OPEN:
            if self._clock() - self._opened_at < self._recovery_timeout:
                raise CircuitOpenError(self._provider, operation=operation)
            self._transition(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._trial_in_flight:
                raise CircuitOpenError(self._provider, operation=operation)
            self._trial_in_flight = True

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        if self._state is not CircuitState.CLOSED:
            self._transition(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or (
            self._state is CircuitState.CLOSED and self._failures >= self._threshold
        ):
            self._opened_at = self._clock()
            self._transition(CircuitState.OPEN)

    def record_abort(self) -> None:
        """The call ended without a verdict (cancelled): free the half-open trial slot."""
        self._trial_in_flight = False

    def _transition(self, new: CircuitState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        PROVIDER_CIRCUIT_STATE.labels(self._provider).set(_GAUGE_VALUE[new])
        logger.warning(
            "circuit state changed: provider=%s old=%s new=%s", self._provider, old, new
        )
        callback = self._on_state_change
        if callback is None:
            return
        try:
            result = callback(self._provider, old, new)
        except Exception:
            logger.exception("on_state_change callback failed: provider=%s", self._provider)
            return
        if inspect.isawaitable(result):
            future = asyncio.ensure_future(result)
            self._tasks.add(future)
            future.add_done_callback(self._callback_done)

    def _callback_done(self, future: asyncio.Future[Any]) -> None:
        self._tasks.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error(
                "on_state_change callback failed: provider=%s error=%s",
                self._provider,
                type(future.exception()).__name__,
            )


# --------------------------------------------------------------------------- client base


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return decode_json(self.body)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class BaseProviderClient:
    """Shared transport for provider clients; subclasses add auth and error mapping."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        timeout_total: float = 15.0,
        timeout_connect: float = 5.0,
        max_attempts: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        backoff_jitter: float = 0.5,
        max_retry_after: float = 60.0,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        on_state_change: StateChangeCallback | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_response_bytes: int = 20 * 1024 * 1024,
        user_agent: str = "ShipLabelBot/0.1",
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._provider = provider
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_total, connect=timeout_connect)
        self._timeout_connect = timeout_connect
        self._max_attempts = max_attempts
        self._backoff = wait_exponential(
            multiplier=backoff_initial, max=backoff_max
        ) + wait_random(0, backoff_jitter)
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._max_response_bytes = max_response_bytes
        self._user_agent = user_agent
        self._http: aiohttp.ClientSession | None = None
        self._breaker = CircuitBreaker(
            provider,
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            clock=clock,
            on_state_change=on_state_change,
        )

    # ----------------------------------------------------------------- lifecycle

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    async def start(self) -> None:
        self._session()

    async def close(self) -> None:
        session, self._http = self._http, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            )
        return self._http

    # ----------------------------------------------------------------- subclass hooks

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _secrets(self) -> Collection[str]:
        """Values that must never appear in error messages."""
        return ()

    def _error_message(self, result: HttpResult) -> str:
        """A short, human message extracted from an error body (may be empty)."""
        return ""

    def _rejected(self, operation: str, result: HttpResult) -> ProviderError:
        """Maps a 4xx (other than 401/403/429) to a typed error."""
        message = self._error_message(result) or f"request rejected (HTTP {result.status})"
        cls = ProviderNotFound if result.status == 404 else ProviderRejected
        return cls(
            self._provider,
            message,
            operation=operation,
            status=result.status,
            code="not_found" if result.status == 404 else f"http_{result.status}",
        )

    # ----------------------------------------------------------------- helpers

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    @contextmanager
    def _parsing(self, operation: str) -> Iterator[None]:
        """Turns shape errors while reading a response into ProviderResponseError."""
        try:
            yield
        except (MalformedResponse, KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise ProviderResponseError(
                self._provider,
                self._redact(f"unexpected response: {exc}"),
                operation=operation,
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        delay = float(self._backoff(state))
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(exc, ProviderRateLimited) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._max_retry_after))
        return delay

    def _retrying(
        self, operation: str, attempts: int, max_wait: float | None = None
    ) -> AsyncRetrying:
        def before_sleep(state: RetryCallState) -> None:
            PROVIDER_RETRIES.labels(self._provider, operation).inc()
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            logger.info(
                "retrying provider call: provider=%s operation=%s attempt=%s error=%s wait=%.2f",
                self._provider,
                operation,
                state.attempt_number,
                type(exc).__name__ if exc is not None else None,
                state.upcoming_sleep,
            )

        stop: stop_base = stop_after_attempt(attempts)
        if max_wait is not None:
            stop = stop | _StopWhenWaitOver(self._wait, max_wait)
        return AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self._base_url + path_or_url

    # ----------------------------------------------------------------- the call

    async def _request(
        self,
        operation: str,
        method: str,
        path_or_url: str,
        *,
        idempotent: bool,
        json_body: Any = None,
        json_body_for_attempt: Callable[[int], Any] | None = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
        request_timeout: float | None = None,
        accept_statuses: Collection[int] = (),
        max_attempts: int | None = None,
        max_retry_wait: float | None = None,
    ) -> HttpResult:
        """Sends one logical call. Idempotent calls are retried on retryable errors;
        non-idempotent calls get exactly one attempt; ``max_retry_wait`` gives up instead
        of waiting longer than that before a retry (e.g. a long 429 ``Retry-After``).
        ``json_body_for_attempt`` builds the body of each attempt from its number (1, 2, …)
        when a retry must differ from the first try (e.g. a fresh unique id, because the
        first may have been applied)."""
        url = self._url(path_or_url)
        body = encode_json(json_body) if json_body is not None else None
        headers: dict[str, str] = {}
        if body is not None or json_body_for_attempt is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers.update(self._auth_headers())
        attempts = self._max_attempts if idempotent else 1
        if max_attempts is not None:
            attempts = max(1, min(attempts, max_attempts))
        async for attempt in self._retrying(operation, attempts, max_retry_wait):
            with attempt:
                number = attempt.retry_state.attempt_number
                if json_body_for_attempt is not None:
                    body = encode_json(json_body_for_attempt(number))
                return await self._attempt(
                    operation,
                    method,
                    url,
                    headers=headers,
                    body=body,
                    params=params,
                    request_timeout=request_timeout,
                    accept_statuses=accept_statuses,
                    attempt_number=number,
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        params: Mapping[str, str] | None,
        request_timeout: float | None,
        accept_statuses: Collection[int],
        attempt_number: int,
    ) -> HttpResult:
        try:
            self._breaker.before_call(operation)
        except CircuitOpenError:
            PROVIDER_CALLS.labels(self._provider, operation, "circuit_open").inc()
            raise
        outcome = "aborted"
        started = time.perf_counter()
        try:
            try:
                result = await self._send(method, url, headers, body, params, request_timeout)
            except TimeoutError:
                outcome = "timeout"
                self._breaker.record_failure()
                raise ProviderUnavailable(
                    self._provider,
                    "request timed out",
                    operation=operation,
                    reason="timeout",
                    outcome_unknown=body is not None or method != "GET",
                ) from None
            except aiohttp.ClientConnectorError as exc:
                outcome = "connection_error"
                self._breaker.record_failure()
                raise ProviderUnavailable(
                    self._provider,
                    f"cannot connect ({type(exc).__name__})",
                    operation=operation,
                    reason="connection",
                    outcome_unknown=False,
                ) from None
            except aiohttp.ClientError as exc:
                outcome = "connection_error"
                self._breaker.record_failure()
                raise ProviderUnavailable(
                    self._provider,
                    f"connection failed ({type(exc).__name__})",
                    operation=operation,
                    reason="connection",
                    outcome_unknown=True,
                ) from None
            except BaseException:
                self._breaker.record_abort()
                raise
            error = None if result.status in accept_statuses else self._classify(operation, result)
            if error is None:
                outcome = "success"
                self._breaker.record_success()
                return result
            if isinstance(error, ProviderUnavailable | ProviderRateLimited):
                self._breaker.record_failure()
            else:
                # The provider answered: business errors say nothing about its health.
                self._breaker.record_success()
            outcome = _outcome_name(error)
            raise error
        finally:
            PROVIDER_CALL_LATENCY.labels(self._provider, operation).observe(
                time.perf_counter() - started
            )
            PROVIDER_CALLS.labels(self._provider, operation, outcome).inc()
            if outcome != "success":
                logger.log(
                    logging.INFO if outcome in _QUIET_OUTCOMES else logging.WARNING,
                    "provider call failed: provider=%s operation=%s outcome=%s attempt=%s",
                    self._provider,
                    operation,
                    outcome,
                    attempt_number,
                )

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        params: Mapping[str, str] | None,
        request_timeout: float | None,
    ) -> HttpResult:
        session = self._session()
        timeout = (
            aiohttp.ClientTimeout(total=request_timeout, connect=self._timeout_connect)
            if request_timeout is not None
            else self._timeout
        )
        async with session.request(
            method,
            url,
            data=body,
            params=params,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise aiohttp.ClientPayloadError("response body too large")
                chunks.append(chunk)
            return HttpResult(response.status, response.headers, b"".join(chunks))

    def _classify(self, operation: str, result: HttpResult) -> ProviderError | None:
        status = result.status
        if 200 <= status < 300:
            return None
        if status == 429:
            return ProviderRateLimited(
                self._provider,
                self._redact(self._error_message(result) or "rate limited"),
                operation=operation,
                retry_after=parse_retry_after(result.headers.get("Retry-After")),
            )
        if status >= 500:
            return ProviderUnavailable(
                self._provider,
                self._redact(self._error_message(result) or "server error"),
                operation=operation,
                status=status,
                reason="server_error",
                outcome_unknown=True,
            )
        if status in (401, 403):
            return ProviderAuthError(
                self._provider,
                self._redact(self._error_message(result) or "authentication failed"),
                operation=operation,
                status=status,
            )
        if status in _REDIRECTS or status < 200 or 300 <= status < 400:
            return ProviderResponseError(
                self._provider,
                f"unexpected HTTP status {status}",
                operation=operation,
                status=status,
            )
        return self._rejected(operation, result)


def _outcome_name(error: ProviderError) -> str:
    if isinstance(error, ProviderRateLimited):
        return "rate_limited"
    if isinstance(error, ProviderUnavailable):
        return "server_error"
    if isinstance(error, ProviderAuthError):
        return "auth_error"
    if isinstance(error, ProviderNotFound):
        return "not_found"
    if isinstance(error, ProviderRejected):
        return "rejected"
    return "bad_response"
