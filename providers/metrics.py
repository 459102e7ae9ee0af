"""Prometheus metrics for outbound provider calls (default registry, defined once)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "PROVIDER_CALLS",
    "PROVIDER_CALL_LATENCY",
    "PROVIDER_CIRCUIT_STATE",
    "PROVIDER_RETRIES",
]

PROVIDER_CALLS = Counter(
    "provider_calls_total",
    "HTTP attempts to external providers, by outcome",
    ["provider", "operation", "outcome"],
)

PROVIDER_CALL_LATENCY = Histogram(
    "provider_call_latency_seconds",
    "Latency of one HTTP attempt to an external provider",
    ["provider", "operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

PROVIDER_CIRCUIT_STATE = Gauge(
    "provider_circuit_state",
    "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open",
    ["provider"],
)

PROVIDER_RETRIES = Counter(
    "provider_retries_total",
    "Retries of provider calls (attempts after the first)",
    ["provider", "operation"],
)
