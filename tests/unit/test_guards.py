"""Production guards of ``python -m bot run`` (and the same warnings in ``check-config``).

``run`` refuses, with one line and exit status 2: the in-memory database without
``--allow-memory``; an OxaPay ``callback_url`` that OxaPay cannot reach (loopback, or not
HTTPS) while OxaPay is enabled; a "test" ShipStation key that is not a ``TEST_`` key.
The demo, the benchmarks and the tests build the application themselves and never pass
through ``run``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import bot.__main__ as cli
from bot.settings import load_settings, production_problems

SECRET_ENV = (
    "TELEGRAM_BOT_TOKEN",
    "MONGO_URL",
    "SHIPSTATION_API_KEY",
    "SHIPSTATION_TEST_API_KEY",
    "OXAPAY_MERCHANT_API_KEY",
    "SENTRY_DSN",
)
PUBLIC_CALLBACK = "https://bot.example.com/callbacks/oxapay"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A production-like environment that passes every guard; tests spoil one thing."""
    for name in list(os.environ):
        if name.startswith("SHIPBOT_") or name in SECRET_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "424242:guard-test-token")
    monkeypatch.setenv("MONGO_URL", "mongodb://db1,db2,db3/shiplabel?replicaSet=rs0")
    monkeypatch.setenv("SHIPSTATION_TEST_API_KEY", "TEST_abc")
    monkeypatch.setenv("SHIPSTATION_API_KEY", "live-key")
    monkeypatch.setenv("OXAPAY_MERCHANT_API_KEY", "merchant-key")
    monkeypatch.setenv("SHIPBOT_PAYMENTS__OXAPAY__CALLBACK_URL", PUBLIC_CALLBACK)
    return monkeypatch


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replaces the application so a ``run`` the guards let through records instead."""
    calls: list[dict[str, Any]] = []

    async def fake_run(application: object, **kwargs: Any) -> None:
        calls.append(kwargs)

    monkeypatch.setattr("bot.application.build_application", lambda *a, **k: object())
    monkeypatch.setattr("bot.application.build_storage", lambda *a, **k: object())
    monkeypatch.setattr("bot.runner.run_until_signalled", fake_run)
    monkeypatch.setattr("bot.__main__._configure_logging", lambda *a, **k: None)
    monkeypatch.setattr("bot.sentry.init_sentry", lambda *a, **k: None)
    return calls


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_production_configuration_passes(
    env: pytest.MonkeyPatch, started: list[dict[str, Any]]
) -> None:
    assert production_problems(load_settings()) == []
    assert cli.main(["run"]) == 0
    assert len(started) == 1
    assert started[0]["startup"].max_attempts >= 1  # start-up retries are on for `run`


def test_the_in_memory_database_needs_the_flag(
    env: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.setenv("MONGO_URL", "mongomock://")
    line = _refused(capsys, ["run"])
    assert "mongomock://" in line and "--allow-memory" in line
    assert started == []
    assert cli.main(["run", "--allow-memory"]) == 0
    assert len(started) == 1


@pytest.mark.parametrize(
    ("callback_url", "reason"),
    [
        ("http://127.0.0.1:8080/callbacks/oxapay", "loopback"),
        ("https://localhost/callbacks/oxapay", "loopback"),
        ("https://[::1]:8443/callbacks/oxapay", "loopback"),
        ("https://127.8.9.10/callbacks/oxapay", "loopback"),
        ("http://bot.example.com/callbacks/oxapay", "HTTPS"),
        ("", "HTTPS"),
    ],
)
def test_an_unreachable_oxapay_callback_is_refused(
    env: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    callback_url: str,
    reason: str,
) -> None:
    env.setenv("SHIPBOT_PAYMENTS__OXAPAY__CALLBACK_URL", callback_url)
    line = _refused(capsys, ["run", "--allow-memory"])
    assert "payments.oxapay.callback_url" in line and reason in line
    assert started == []


def test_the_callback_guard_applies_only_while_oxapay_is_enabled(
    env: pytest.MonkeyPatch, started: list[dict[str, Any]]
) -> None:
    env.setenv("SHIPBOT_PAYMENTS__OXAPAY__CALLBACK_URL", "http://127.0.0.1:8080/callbacks/oxapay")
    env.delenv("OXAPAY_MERCHANT_API_KEY")
    assert cli.main(["run"]) == 0


def test_a_local_oxapay_stand_in_may_call_back_on_loopback(
    env: pytest.MonkeyPatch, started: list[dict[str, Any]]
) -> None:
    # `python -m sandbox`: the fake OxaPay runs on this machine and reaches a loopback URL.
    env.setenv("SHIPBOT_PAYMENTS__OXAPAY__BASE_URL", "http://127.0.0.1:8082")
    env.setenv("SHIPBOT_PAYMENTS__OXAPAY__CALLBACK_URL", "http://127.0.0.1:8080/callbacks/oxapay")
    assert cli.main(["run"]) == 0


def test_a_test_shipstation_key_must_be_a_test_key(
    env: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.setenv("SHIPSTATION_TEST_API_KEY", "prod-looking-key-123")
    line = _refused(capsys, ["run"])
    assert "SHIPSTATION_TEST_API_KEY" in line and "TEST_" in line
    assert "prod-looking-key-123" not in line  # a secret is never shown
    assert started == []


def test_several_problems_still_give_one_line(
    env: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.setenv("MONGO_URL", "mongomock://")
    env.setenv("SHIPSTATION_TEST_API_KEY", "live-key")
    line = _refused(capsys, ["run"])
    assert "mongomock://" in line and "1 more" in line and "check-config" in line


def test_check_config_shows_the_same_warnings(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("MONGO_URL", "mongomock://")
    env.setenv("SHIPSTATION_TEST_API_KEY", "live-key")
    env.setenv("SHIPBOT_PAYMENTS__OXAPAY__CALLBACK_URL", "http://127.0.0.1:8080/callbacks/oxapay")
    assert cli.main(["check-config"]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert warnings == [f"warning: {p}" for p in production_problems(load_settings())]
    assert len(warnings) == 3
    assert '"MONGO_URL": "**********"' in captured.out  # the settings are still printed


@pytest.mark.parametrize(
    ("error", "status", "prefix"),
    [
        ("index", 2, "index conflict: sessions.expires_at_ttl"),
        ("outage", 1, "start-up failed: MongoDB still unreachable"),
        ("token", 2, "start-up failed: the Bot API rejected"),
    ],
)
def test_run_ends_a_failed_start_up_with_one_line(
    env: pytest.MonkeyPatch,
    started: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: str,
    status: int,
    prefix: str,
) -> None:
    from bot.runner import StartupFailed
    from storage.indexes import IndexConflict

    errors: dict[str, Exception] = {
        "index": IndexConflict("index conflict: sessions.expires_at_ttl … fix: …"),
        "outage": StartupFailed("MongoDB still unreachable after 40 attempts: …"),
        "token": StartupFailed("the Bot API rejected TELEGRAM_BOT_TOKEN …", config_error=True),
    }

    async def failing_run(application: object, **kwargs: Any) -> None:
        raise errors[error]

    monkeypatch.setattr("bot.runner.run_until_signalled", failing_run)
    assert cli.main(["run"]) == status
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix)
