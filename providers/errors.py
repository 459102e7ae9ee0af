"""Typed errors raised by provider clients.

Messages carry short facts only (provider, operation, HTTP status, the provider's
error code and message). They never contain API keys, headers or request bodies.
"""

from __future__ import annotations

__all__ = [
    "CircuitOpenError",
    "InvalidCallback",
    "ProviderAuthError",
    "ProviderError",
    "ProviderInsufficientFunds",
    "ProviderInvalidAddress",
    "ProviderNotFound",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderResponseError",
    "ProviderUnavailable",
]

_MAX_MESSAGE = 300


class ProviderError(Exception):
    """Base class. `retryable` tells whether the same call may succeed later."""

    retryable: bool = False

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        operation: str | None = None,
        status: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.status = status
        self.message = message[:_MAX_MESSAGE]
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f"{self.provider}.{self.operation}" if self.operation else self.provider
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}: {self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, operation={self.operation!r}, "
            f"status={self.status!r}, message={self.message!r})"
        )


class ProviderUnavailable(ProviderError):
    """Timeout, connection failure, 5xx, or an open circuit.

    `outcome_unknown` is True when the request may have reached the provider (a timeout
    or 5xx after sending): a non-idempotent call must be looked up before any retry.
    """

    retryable = True

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        operation: str | None = None,
        status: int | None = None,
        retryable: bool | None = None,
        reason: str = "unavailable",
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(
            provider, message, operation=operation, status=status, retryable=retryable
        )
        self.reason = reason
        self.outcome_unknown = outcome_unknown


class CircuitOpenError(ProviderUnavailable):
    """The circuit breaker is open: the call failed fast without any HTTP request."""

    retryable = False

    def __init__(self, provider: str, *, operation: str | None = None) -> None:
        super().__init__(
            provider,
            "circuit open, call not attempted",
            operation=operation,
            reason="circuit_open",
        )


class ProviderRateLimited(ProviderError):
    """HTTP 429. `retry_after` is the provider's Retry-After in seconds, if any."""

    retryable = True

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        operation: str | None = None,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, message, operation=operation, status=status)
        self.retry_after = retry_after


class ProviderAuthError(ProviderError):
    """401/403: the key is missing, wrong or lacks permission."""


class ProviderResponseError(ProviderError):
    """The provider answered, but the answer is not what its API documents."""


class ProviderRejected(ProviderError):
    """A 4xx business error (or an error in a 2xx partial success)."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        operation: str | None = None,
        status: int | None = None,
        code: str = "rejected",
        field: str | None = None,
        error_type: str | None = None,
        error_source: str | None = None,
    ) -> None:
        super().__init__(provider, message, operation=operation, status=status)
        self.code = code
        self.field = field
        self.error_type = error_type
        self.error_source = error_source

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{super().__str__()} code={self.code}{field}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, operation={self.operation!r}, "
            f"status={self.status!r}, code={self.code!r}, field={self.field!r}, "
            f"message={self.message!r})"
        )


class ProviderInsufficientFunds(ProviderRejected):
    """ShipStation `insufficient_funds`: the account balance cannot pay for the label."""


class ProviderInvalidAddress(ProviderRejected):
    """ShipStation `invalid_address`."""


class ProviderNotFound(ProviderRejected):
    """404, or ShipStation `invalid_identifier`."""


class InvalidCallback(ProviderError):
    """A webhook payload that is not valid JSON or lacks required fields."""
