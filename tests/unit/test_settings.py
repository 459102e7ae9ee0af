import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHIPBOT_")}
    clean.pop("TELEGRAM_BOT_TOKEN", None)
    clean.pop("MONGO_URL", None)
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults_from_config_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPBOT_TELEGRAM__BASE_URL", raising=False)
    settings = load_settings(ROOT / "config.yaml")
    assert settings.mongo.max_pool_size == 20
    assert settings.mongo.min_pool_size == 2
    assert settings.mongo.max_idle_time_ms == 30000
    assert settings.mongo.server_selection_timeout_ms == 3000
    assert settings.telegram.connect_timeout == 10
    assert settings.telegram.read_timeout == 10
    assert settings.telegram.write_timeout == 10
    assert settings.telegram.pool_timeout == 5
    assert settings.sessions.ttl_minutes == 60
    assert settings.sessions.flush_interval_seconds <= 2
    assert settings.shipping.validate_addresses is True  # the carrier's address check: on
    assert settings.shipping.validation_timeout_seconds == 5


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPBOT_TELEGRAM__BASE_URL", "http://127.0.0.1:9/bot")
    monkeypatch.setenv("SHIPBOT_MONGO__MAX_POOL_SIZE", "7")
    settings = load_settings(ROOT / "config.yaml")
    assert settings.telegram.base_url == "http://127.0.0.1:9/bot"
    assert settings.mongo.max_pool_size == 7


def test_malformed_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPBOT_TELEGRAM__READ_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match=r"telegram\.read_timeout"):
        load_settings(ROOT / "config.yaml")


def test_secrets_are_refused_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("secrets:\n  telegram_bot_token: x\n")
    with pytest.raises(ConfigError, match="secrets"):
        load_settings(path)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("telegram:\n  base_ulr: http://x\n")
    with pytest.raises(ConfigError, match=r"telegram\.base_ulr"):
        load_settings(path)


def test_run_without_token_exits_2_with_one_line() -> None:
    result = _run_cli("run", env={"MONGO_URL": "mongomock://"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TELEGRAM_BOT_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def test_run_with_malformed_setting_exits_2() -> None:
    result = _run_cli(
        "run",
        env={"TELEGRAM_BOT_TOKEN": "1:x", "SHIPBOT_MONGO__MAX_POOL_SIZE": "many"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "mongo.max_pool_size" in result.stderr


def test_check_config_redacts_secrets() -> None:
    token = "424242:SECRET-value-never-printed"
    result = _run_cli("check-config", env={"TELEGRAM_BOT_TOKEN": token})
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout
    assert '"TELEGRAM_BOT_TOKEN": "**********"' in result.stdout
    assert '"MONGO_URL": "<not set>"' in result.stdout


@pytest.mark.parametrize("recovery_after", ["60", "75"])
def test_recovery_must_wait_out_the_purchase_timeout(
    monkeypatch: pytest.MonkeyPatch, recovery_after: str
) -> None:
    """Recovery failing an order whose purchase is still waiting for the carrier would
    refund a label that may yet be bought: the setting is refused, by name."""
    monkeypatch.setenv("SHIPBOT_SHIPPING__PURCHASE_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("SHIPBOT_SHIPPING__RECOVERY_AFTER_SECONDS", recovery_after)
    with pytest.raises(ConfigError, match=r"shipping\.recovery_after_seconds") as excinfo:
        load_settings(ROOT / "config.yaml")
    assert "purchase_timeout_seconds" in str(excinfo.value)
    assert len(str(excinfo.value).splitlines()) == 1
    monkeypatch.setenv("SHIPBOT_SHIPPING__RECOVERY_AFTER_SECONDS", "76")
    assert load_settings(ROOT / "config.yaml").shipping.recovery_after_seconds == 76


def test_card_currency_must_be_in_the_minor_units_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPBOT_PAYMENTS__CURRENCY", "usd")
    assert load_settings(ROOT / "config.yaml").payments.currency == "USD"
    for code in ("JPY", "XTR", "BTC"):
        monkeypatch.setenv("SHIPBOT_PAYMENTS__CURRENCY", code)
        with pytest.raises(ConfigError, match=r"payments\.currency.*USD, EUR, GBP"):
            load_settings(ROOT / "config.yaml")


def test_card_limits_must_fit_telegrams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPBOT_PAYMENTS__MIN_TOPUP_CENTS", "50")  # under Telegram's $1
    with pytest.raises(ConfigError, match="minor units"):
        load_settings(ROOT / "config.yaml")
    monkeypatch.setenv("SHIPBOT_PAYMENTS__CARD__ENABLED", "false")
    assert load_settings(ROOT / "config.yaml").payments.min_topup_cents == 50


def test_rails_default_to_card_and_crypto_with_stars_off(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(ROOT / "config.yaml")
    pay = settings.payments
    assert (pay.card.enabled, pay.oxapay.enabled, pay.stars.enabled) == (True, True, False)


def test_the_provider_token_is_a_redacted_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "284685063:TEST:provider-secret-never-printed"
    result = _run_cli("check-config", env={"TELEGRAM_PAYMENT_PROVIDER_TOKEN": token})
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert '"TELEGRAM_PAYMENT_PROVIDER_TOKEN": "**********"' in result.stdout
    monkeypatch.setenv("TELEGRAM_PAYMENT_PROVIDER_TOKEN", token)
    assert token in load_settings(ROOT / "config.yaml").secrets.values()  # log redaction
