"""Sentry scrubbing works without sentry-sdk installed; init is optional."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from bot.sentry import FILTERED, PHONE_REDACTED, Scrubber, init_sentry, scrub_event

TOKEN = "7012345678:AAHk-very-secret-token-value-0123456789"
KEY = "oxapay-merchant-key-abcdef"


def make_event() -> dict[str, Any]:
    return {
        "message": f"call to https://api.telegram.org/bot{TOKEN}/getMe failed",
        "logentry": {"message": "user phone %s", "params": ["+1 (555) 123-4567"]},
        "exception": {
            "values": [
                {
                    "type": "ProviderError",
                    "value": f"401 for key {KEY}; customer 555-123-4567",
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "providers/base.py",
                                "lineno": 42,
                                "vars": {"api_key": KEY, "phone": "5551234567", "n": 3},
                            }
                        ]
                    },
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {"category": "httpx", "message": f"POST /bot{TOKEN}/sendMessage", "data": {}},
                {"category": "log", "message": "recipient +15551234567 saved"},
            ]
        },
        "request": {
            "url": "http://127.0.0.1:8080/callbacks/oxapay",
            "headers": {"HMAC": "abc123", "Content-Type": "application/json"},
            "data": {"phone": "(555) 123-4567", "note": f"key={KEY}"},
        },
        "extra": {"to_address": {"phone": "555.123.4567"}, "user_id": 5551234567},
        "tags": {"chat_id": "5551234567"},
    }


def test_scrubs_secrets_tokens_and_phones_everywhere() -> None:
    event = scrub_event(make_event(), None, secrets=[KEY])
    text = repr(event)
    assert TOKEN not in text and "AAHk-very-secret" not in text
    assert KEY not in text
    for phone in ("123-4567", "123.4567", "15551234567"):
        assert phone not in text
    assert event["message"] == "call to https://api.telegram.org/bot[REDACTED]/getMe failed"
    assert event["logentry"]["params"] == [PHONE_REDACTED]
    value = event["exception"]["values"][0]["value"]
    assert value == f"401 for key [REDACTED]; customer {PHONE_REDACTED}"
    frame_vars = event["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"]
    assert frame_vars["api_key"] == FILTERED
    assert frame_vars["n"] == 3
    assert event["breadcrumbs"]["values"][1]["message"] == f"recipient {PHONE_REDACTED} saved"
    assert event["request"]["headers"]["HMAC"] == FILTERED
    assert event["request"]["data"]["phone"] == PHONE_REDACTED
    assert event["extra"]["to_address"]["phone"] == PHONE_REDACTED
    # Bare ten-digit numbers are Telegram ids, not phone numbers: kept for debugging.
    assert event["extra"]["user_id"] == 5551234567
    assert event["tags"]["chat_id"] == "5551234567"
    assert frame_vars["phone"] == "5551234567"


@pytest.mark.parametrize(
    "phone",
    [
        "+1 555 123 4567",
        "+1-555-123-4567",
        "+1 (555) 123-4567",
        "1-555-123-4567",
        "(555) 123-4567",
        "(555)123-4567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        "+15551234567",
        "+447911123456",
    ],
)
def test_phone_formats(phone: str) -> None:
    assert Scrubber().text(f"call {phone} now") == f"call {PHONE_REDACTED} now"


@pytest.mark.parametrize(
    "text",
    [
        "order 5551234567",
        "2025-01-15 12:30:00",
        "version 1.2.3",
        "amount 1234.56 USD",
        "tracking 9400111899223197428490",
        "ip 192.168.100.200",
    ],
)
def test_not_phones(text: str) -> None:
    assert Scrubber().text(text) == text


def test_breadcrumb_hook() -> None:
    crumb = Scrubber([KEY]).breadcrumb({"message": f"using {KEY}", "data": {"token": "x"}})
    assert crumb == {"message": "using [REDACTED]", "data": {"token": FILTERED}}


def test_init_is_a_no_op_without_dsn_or_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    assert init_sentry(None) is False
    assert init_sentry("   ") is False
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # makes the import fail
    assert init_sentry("https://key@o0.ingest.sentry.io/0", [KEY]) is False


def test_init_configures_scrubbing_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, Any] = {}

    class FakeSdk:
        @staticmethod
        def init(**kwargs: Any) -> None:
            calls.update(kwargs)

    monkeypatch.setitem(sys.modules, "sentry_sdk", FakeSdk)
    assert init_sentry("https://key@o0.ingest.sentry.io/0", [KEY], environment="prod")
    assert calls["send_default_pii"] is False
    assert calls["max_request_body_size"] == "never"
    event = calls["before_send"]({"message": f"key {KEY}"}, None)
    assert event == {"message": "key [REDACTED]"}
    assert calls["before_breadcrumb"]({"message": "+15551234567"}, None) == {
        "message": PHONE_REDACTED
    }
