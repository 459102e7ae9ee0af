"""Prometheus metrics of the worker (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPDATES_RECEIVED = Counter(
    "bot_updates_received_total", "Updates received from Telegram", ["type"]
)
UPDATES_HANDLED = Counter(
    "bot_updates_handled_total", "Updates handled to the end", ["type", "outcome"]
)
UPDATES_SKIPPED = Counter(
    "bot_updates_skipped_total", "Updates stopped by a gate", ["reason"]
)
HANDLER_LATENCY = Histogram(
    "bot_handler_latency_seconds",
    "Time from the start of processing an update to its end",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter("bot_errors_total", "Exceptions that reached the error handler", ["type"])
TELEGRAM_CALLS = Counter(
    "bot_telegram_api_calls_total",
    "Bot API calls by method and HTTP status (429 = rate limited by Telegram)",
    ["method", "result"],
)
OUTBOX_DEPTH = Gauge("bot_outbox_depth", "Undelivered outbox messages")
OUTBOX_AGE = Gauge("bot_outbox_oldest_age_seconds", "Age of the oldest undelivered message")
OUTBOX_DELIVERIES = Counter(
    "bot_outbox_deliveries_total", "Outbox delivery attempts by result", ["result"]
)
ACTIVE_SESSIONS = Gauge("bot_active_sessions", "Conversations held in memory")
SESSIONS_EXPIRED = Counter("bot_sessions_expired_total", "Sessions expired", ["path"])
PAYMENT_OUTCOMES = Counter(
    "bot_payment_outcomes_total", "Payment notifications by provider and outcome",
    ["provider", "source", "outcome"],
)
PAYMENT_CALLBACKS = Counter(
    "bot_payment_callbacks_total", "OxaPay callback requests by result", ["result"]
)
LEDGER_EFFECTS = Counter(
    "bot_ledger_effects_total",
    "Ledger entries applied by kind and direction",
    ["kind", "direction"],
)
