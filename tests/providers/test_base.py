"""Unit tests of the transport pieces: breaker, Retry-After, JSON, errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from providers.base import CircuitBreaker, CircuitState, decode_json, encode_json
from providers.base import parse_retry_after as retry_after
from providers.errors import (
    CircuitOpenError,
    ProviderInsufficientFunds,
    ProviderUnavailable,
)
from tests.providers.conftest import ManualClock, Transitions


def gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("provider_circuit_state", {"provider": provider})


def test_breaker_full_cycle(mono: ManualClock, transitions: Transitions) -> None:
    breaker = CircuitBreaker(
        "unit-a",
        failure_threshold=3,
        recovery_timeout=10,
        clock=mono,
        on_state_change=transitions,
    )
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.before_call()
    breaker.record_success()  # a success resets the consecutive count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert gauge("unit-a") == 2
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    mono.advance(9.9)
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    mono.advance(0.2)
    breaker.before_call()  # the trial call
    assert breaker.state is CircuitState.HALF_OPEN
    assert gauge("unit-a") == 1
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # only one trial at a time
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert gauge("unit-a") == 0
    assert [(old, new) for _, old, new in transitions.calls] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert {provider for provider, _, _ in transitions.calls} == {"unit-a"}


def test_breaker_failed_trial_reopens_and_abort_frees_trial(
    mono: ManualClock, transitions: Transitions
) -> None:
    breaker = CircuitBreaker(
        "unit-b", failure_threshold=1, recovery_timeout=5, clock=mono, on_state_change=transitions
    )
    breaker.before_call()
    breaker.record_failure()
    mono.advance(5)
    breaker.before_call()
    breaker.record_abort()  # cancelled trial: no verdict, slot freed
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a new cooldown started
    assert [new for _, _, new in transitions.calls] == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
    ]


async def test_breaker_accepts_async_callback_and_survives_its_errors(mono: ManualClock) -> None:
    seen: list[CircuitState] = []

    async def alert(provider: str, old: CircuitState, new: CircuitState) -> None:
        seen.append(new)
        raise RuntimeError("alerting is down")

    breaker = CircuitBreaker("unit-c", failure_threshold=1, clock=mono, on_state_change=alert)
    breaker.before_call()
    breaker.record_failure()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == [CircuitState.OPEN]


def test_parse_retry_after() -> None:
    assert retry_after("7") == 7
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-3") == 0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30


def test_json_writes_decimals_exactly_and_refuses_floats() -> None:
    body = encode_json({"amount": Decimal("12.30"), "n": 3, "ok": True, "x": None})
    assert body == b'{"amount":12.30,"n":3,"ok":true,"x":null}'
    assert decode_json(b'{"a": 0.1}')["a"] == Decimal("0.1")
    with pytest.raises(TypeError):
        encode_json({"amount": 0.1})


def test_error_repr_and_str_carry_no_body() -> None:
    error = ProviderInsufficientFunds(
        "shipstation",
        "You do not have sufficient funds",
        operation="create_label",
        status=400,
        code="insufficient_funds",
    )
    assert "insufficient_funds" in str(error)
    assert "create_label" in repr(error)
    assert not error.retryable
    assert ProviderUnavailable("x", "down").retryable
    assert not CircuitOpenError("x").retryable
    assert len(ProviderUnavailable("x", "m" * 5000).message) <= 300
