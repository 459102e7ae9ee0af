"""Settings: non-secrets from ``config.yaml``, overrides and secrets from the environment.

Precedence (highest first): ``SHIPBOT_<SECTION>__<KEY>`` environment variables, then
``config.yaml``, then the defaults below. Secrets are read only from their own
environment variables and are ``SecretStr`` so they never render in logs or reprs.
"""

from __future__ import annotations

import ipaddress
import os
from decimal import Decimal
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"
CONFIG_PATH_ENV = "SHIPBOT_CONFIG"


class ConfigError(Exception):
    """A missing or malformed setting; the message names it in one line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TelegramSettings(_Section):
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(10.0, gt=0)
    write_timeout: float = Field(10.0, gt=0)
    pool_timeout: float = Field(5.0, gt=0)
    connection_pool_size: int = Field(8, ge=1)
    poll_timeout: int = Field(30, ge=0, le=50)
    max_concurrent_updates: int = Field(512, ge=1)
    # Updates one chat may have queued or running; more are dropped with the flood notice.
    max_queued_per_chat: int = Field(20, ge=1)
    rate_limit_max_retries: int = Field(3, ge=0, le=10)
    overall_max_rate: float = Field(30, ge=0)
    group_max_rate: float = Field(20, ge=0)


class MongoSettings(_Section):
    database: str = Field("shiplabel", min_length=1)
    max_pool_size: int = Field(20, ge=1)
    min_pool_size: int = Field(2, ge=0)
    max_idle_time_ms: int = Field(30000, ge=0)
    server_selection_timeout_ms: int = Field(3000, ge=1)
    # Ledger, balances, payments, orders and refunds are acknowledged only once a majority
    # of the replica set has them (an election cannot roll them back); an integer asks
    # that many members. docs/OPERATIONS.md, "MongoDB topology".
    money_write_concern: int | Literal["majority"] = "majority"
    money_wtimeout_ms: int = Field(10000, ge=0)

    @field_validator("money_write_concern")
    @classmethod
    def _acknowledged(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be \"majority\" or at least 1 (money writes are acknowledged)")
        return value


class SessionSettings(_Section):
    ttl_minutes: int = Field(60, ge=1)
    purge_grace_seconds: int = Field(86400, ge=0)
    flush_interval_seconds: float = Field(1.0, gt=0, le=2.0)
    sweep_interval_seconds: float = Field(60, gt=0)


class StartupSettings(_Section):
    """MongoDB or the Bot API down at start-up: retried in-process, doubling from
    ``retry_initial_seconds`` up to ``retry_max_seconds``, at most ``max_attempts`` times
    per dependency; then the process exits 1 and supervisord starts it again."""

    retry_initial_seconds: float = Field(1.0, gt=0)
    retry_max_seconds: float = Field(30.0, gt=0)
    max_attempts: int = Field(40, ge=1)


class UpdatesSettings(_Section):
    processed_ttl_hours: int = Field(24, ge=1)
    # An edited message during a conversation gets one "send it as a new message" reply
    # per chat at most this often.
    edit_notice_seconds: float = Field(30, ge=0)


class OutboxSettings(_Section):
    interval_seconds: float = Field(5, gt=0)
    max_attempts: int = Field(10, ge=1)
    batch_size: int = Field(50, ge=1)
    alert_dedup_minutes: int = Field(10, ge=0)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


class WebSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(65536, ge=1024)
    check_timeout_seconds: float = Field(2.0, gt=0)
    # /readyz fails when the last successful getUpdates is older than this.
    updates_max_age_seconds: float = Field(90, gt=0)


class PollerSettings(_Section):
    """Single poller with hot standby: the holder of the ``locks/poller`` lease polls."""

    enabled: bool = True
    lease_seconds: float = Field(30, gt=0)
    renew_seconds: float = Field(5, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_renewals(self) -> PollerSettings:
        if self.lease_seconds < 3 * self.renew_seconds:
            raise ValueError("lease_seconds must be at least 3 x renew_seconds")
        return self


class FloodSettings(_Section):
    """A user sending more than ``max_updates`` in ``window_seconds`` is told once to slow
    down and ignored for ``mute_seconds``."""

    max_updates: int = Field(20, ge=1)
    window_seconds: float = Field(10, gt=0)
    mute_seconds: float = Field(30, ge=0)


class I18nSettings(_Section):
    default_language: str = "en"
    languages: tuple[str, ...] = ("en", "ru", "uk")


class OxaPaySettings(_Section):
    # Crypto top-ups; also need OXAPAY_MERCHANT_API_KEY.
    enabled: bool = True
    base_url: str = "https://api.oxapay.com"
    sandbox: bool = False
    lifetime_minutes: int = Field(60, ge=15, le=2880)
    # Public URL OxaPay posts callbacks to (the bot's web server behind a reverse proxy).
    callback_url: str = "http://127.0.0.1:8080/callbacks/oxapay"
    return_url: str | None = None
    timeout_seconds: float = Field(20, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)
    failure_threshold: int = Field(5, ge=1)
    recovery_timeout_seconds: float = Field(30, gt=0)


class StarsSettings(_Section):
    # Off by default: Telegram Stars are for digital goods and services (Bot Developer
    # Terms §6.1-6.2, Stars Terms §4); postage for a physical delivery goes through a
    # payment provider (the card rail). docs/OPERATIONS.md, "Payment rails".
    enabled: bool = False
    stars_per_usd: int = Field(77, ge=1)
    invoice_lifetime_minutes: int = Field(60, ge=1)
    # getStarTransactions pages (100 each) read per reconciliation run.
    reconcile_max_pages: int = Field(10, ge=1, le=100)
    # Transactions re-read each run (their ids are kept) to catch a history that changed.
    history_overlap: int = Field(200, ge=1, le=1000)
    # A refund with no answer from Telegram may be retried (/refundstars) after this.
    refund_retry_after_seconds: int = Field(300, ge=30)
    # Admins are alerted about a refund still unknown after this.
    refund_unknown_alert_minutes: int = Field(30, ge=1)


# Card currencies the bot allows, with the ``exp`` Telegram's currencies.json gives them
# (digits after the decimal point: the Bot API's amounts are in these minor units) and
# its min_amount/max_amount for one payment, in minor units. The balance is kept in cents
# of ``payments.currency`` and cards are charged in that same currency (no conversion), so
# only currencies with cents are listed.
CARD_CURRENCIES: dict[str, tuple[int, int, int]] = {
    "USD": (2, 100, 1_000_000),
    "EUR": (2, 100, 1_000_000),
    "GBP": (2, 100, 1_000_000),
}


class CardSettings(_Section):
    """Card top-ups through Telegram Payments with a payment provider (BotFather's
    provider token in TELEGRAM_PAYMENT_PROVIDER_TOKEN)."""

    enabled: bool = True
    invoice_lifetime_minutes: int = Field(60, ge=5, le=1440)


class PaymentsSettings(_Section):
    currency: str = "USD"
    min_topup_cents: int = Field(1000, ge=1)
    max_topup_cents: int = Field(100000, ge=1)
    reconcile_interval_seconds: float = Field(60, gt=0)
    stale_after_minutes: int = Field(30, ge=1)
    escalate_after_hours: int = Field(24, ge=1)
    callback_max_bytes: int = Field(65536, ge=1024)
    oxapay: OxaPaySettings = OxaPaySettings()
    card: CardSettings = CardSettings()
    stars: StarsSettings = StarsSettings()

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        code = value.strip().upper()
        if code not in CARD_CURRENCIES:
            allowed = ", ".join(CARD_CURRENCIES)
            raise ValueError(f"must be one of {allowed} (amounts are kept in its cents)")
        return code

    @model_validator(mode="after")
    def _limits_fit_a_card_payment(self) -> PaymentsSettings:
        if self.min_topup_cents > self.max_topup_cents:
            raise ValueError("min_topup_cents must not exceed max_topup_cents")
        if self.card.enabled:
            exp, least, most = CARD_CURRENCIES[self.currency]
            if minor_units(self.min_topup_cents, exp) < least or (
                minor_units(self.max_topup_cents, exp) > most
            ):
                raise ValueError(
                    f"card top-ups in {self.currency} must be between {least} and {most} "
                    f"minor units (Telegram's limits); adjust min_topup_cents/max_topup_cents"
                )
        return self


def minor_units(cents: int, exp: int) -> int:
    """An amount in cents as the Bot API's integer in the currency's minor units."""
    if exp >= 2:
        return cents * int(10 ** (exp - 2))
    return cents // int(10 ** (2 - exp))


# Seconds between claiming an order and the carrier call (the debit, database round
# trips): recovery waits at least this much longer than the purchase timeout.
PURCHASE_RECOVERY_MARGIN_SECONDS = 15


class ShippingSettings(_Section):
    base_url: str = "https://api.shipstation.com"
    default_api_mode: Literal["test", "production"] = "test"
    markup_percent: Decimal = Field(Decimal("15"), ge=0, le=500)
    markup_fixed_cents: int = Field(50, ge=0)
    rates_max_age_minutes: int = Field(15, ge=1)
    min_weight_oz: int = Field(2, ge=1)  # 0.1 lb rounds up to 2 oz
    max_weight_oz: int = Field(2400, ge=1)  # 150 lb
    max_side_in: Decimal = Field(Decimal("108"), gt=0)
    timeout_seconds: float = Field(20, gt=0)
    purchase_timeout_seconds: float = Field(60, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)
    failure_threshold: int = Field(5, ge=1)
    recovery_timeout_seconds: float = Field(30, gt=0)
    recovery_after_seconds: int = Field(120, ge=10)
    recovery_interval_seconds: float = Field(60, gt=0)
    templates_per_user: int = Field(20, ge=1, le=100)
    # Completed addresses are checked with POST /v2/addresses/validate ("did you mean").
    validate_addresses: bool = True
    validation_timeout_seconds: float = Field(5, gt=0)
    # Insurance at the review: the most a customer may declare (cents), and who insures
    # (ShipStation's `insurance_provider`: the carrier's own, or a parcel insurer).
    max_insured_value_cents: int = Field(500_000, ge=100, le=10_000_000)
    insurance_provider: Literal["carrier", "shipsurance", "parcelguard"] = "carrier"

    @field_validator("recovery_after_seconds")
    @classmethod
    def _recovery_waits_out_the_purchase(cls, value: int, info: ValidationInfo) -> int:
        # Recovering an order whose purchase call may still be waiting for the carrier
        # would fail and refund it while its label can still be bought.
        timeout = info.data.get("purchase_timeout_seconds")
        if timeout is None:
            return value
        least = timeout + PURCHASE_RECOVERY_MARGIN_SECONDS
        if value <= least:
            raise ValueError(
                f"must be greater than purchase_timeout_seconds + "
                f"{PURCHASE_RECOVERY_MARGIN_SECONDS} ({least:g})"
            )
        return value


class RefundSettings(_Section):
    min_label_age_days: int = Field(5, ge=0)
    # USPS through Stamps.com refunds unused labels within 28 days of printing.
    max_label_age_days: int = Field(28, ge=1)
    max_numbers_per_request: int = Field(50, ge=1, le=200)
    check_interval_seconds: float = Field(300, gt=0)
    max_attempts: int = Field(5, ge=1)
    retry_base_seconds: int = Field(300, ge=1)
    voiding_lease_seconds: int = Field(300, ge=10)
    batch_limit: int = Field(50, ge=1)
    # An unused label is reminded this many days before its last refund day.
    remind_days_before: int = Field(3, ge=0, le=20)
    remind_interval_seconds: float = Field(3600, gt=0)  # the reminder / auto-refund job


class TrackingSettings(_Section):
    check_interval_seconds: float = Field(60, gt=0)  # how often the tracking job runs
    # ShipStation allows 200 requests a minute: the job makes at most this many a run.
    max_calls_per_run: int = Field(50, ge=1, le=150)
    interval_minutes: int = Field(120, ge=5)  # between two checks of one label
    retry_base_seconds: int = Field(300, ge=10)  # a failed check: doubling from this
    retry_max_minutes: int = Field(360, ge=1)
    max_age_days: int = Field(60, ge=1)  # tracking stops this long after the purchase


# Telegram's documented ceiling for bulk messages from one bot.
TELEGRAM_BULK_MAX_RATE = 30


class BroadcastSettings(_Section):
    # Never above Telegram's 30 messages/s overall; 1 message per chat is built in.
    rate_per_second: float = Field(25, gt=0, le=TELEGRAM_BULK_MAX_RATE)
    interval_seconds: float = Field(2, gt=0)
    progress_interval_seconds: float = Field(3, ge=1)
    batch_size: int = Field(200, ge=1, le=5000)
    max_concurrency: int = Field(8, ge=1, le=64)
    max_text_length: int = Field(4000, ge=1, le=4096)


class BulkSettings(_Section):
    max_file_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=20 * 1024 * 1024)  # getFile: 20 MB
    max_rows: int = Field(500, ge=1, le=10_000)
    quote_concurrency: int = Field(4, ge=1, le=32)
    # ShipStation v2 allows 200 requests a minute per account; stay below it (0 = no pacing).
    carrier_rate_per_second: float = Field(3, ge=0, le=50)
    interval_seconds: float = Field(3, gt=0)
    progress_interval_seconds: float = Field(3, ge=0)
    row_ttl_days: int = Field(7, ge=1)


class PresetSettings(_Section):
    # Saved parcels (name, weight, size) per customer (/presets).
    max_per_user: int = Field(10, ge=1, le=50)


class AdminConsoleSettings(_Section):
    confirm_ttl_minutes: int = Field(15, ge=1)
    audit_default_entries: int = Field(20, ge=1, le=50)
    recent_items: int = Field(5, ge=1, le=20)
    export_batch_size: int = Field(1000, ge=10, le=10000)


LEGAL_DOCUMENTS = ("terms", "privacy", "paysupport")
TELEGRAM_MESSAGE_LIMIT = 4096  # characters (UTF-16 code units) of one message's text
# Telegram's HTML formatting tags (core.telegram.org/bots/api#html-style).
TELEGRAM_HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
     "tg-spoiler", "span", "blockquote", "tg-emoji"}
)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def telegram_html_problem(text: str) -> str | None:
    """Why Telegram would refuse ``text`` as an HTML message, or None."""
    problems: list[str] = []
    stack: list[str] = []

    class _Checker(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in TELEGRAM_HTML_TAGS:
                problems.append(f"tag <{tag}> is not supported by Telegram")
            stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            if not stack or stack[-1] != tag:
                problems.append(f"</{tag}> does not close the open tag")
            else:
                stack.pop()

    checker = _Checker(convert_charrefs=True)
    checker.feed(text)
    checker.close()
    if stack and not problems:
        problems.append(f"<{stack[-1]}> is never closed")
    if not text.strip():
        problems.append("the text is empty")
    length = utf16_length(text)
    if length > TELEGRAM_MESSAGE_LIMIT:
        problems.append(
            f"{length} characters with markup: more than Telegram's {TELEGRAM_MESSAGE_LIMIT}"
        )
    return problems[0] if problems else None


class LegalSettings(_Section):
    """``/terms``, ``/privacy``, ``/paysupport`` and data retention.

    The texts default to the locale catalogs (``legal.terms`` …), filled in from the real
    settings; ``texts.<document>.<language>`` names a file with the operator's own text
    (Telegram HTML, at most 4096 characters, checked here) used as is for that language.
    Bumping ``terms_version`` asks every customer to accept the terms again before their
    next top-up.
    """

    terms_version: str = Field("1", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    # What the operator keeps (their backup pruning and log rotation), stated in /privacy.
    backup_retention_days: int = Field(30, ge=1)
    log_retention_days: int = Field(14, ge=1)
    # How long the "Delete my data" confirmation button stays valid.
    deletion_confirm_minutes: int = Field(15, ge=1)
    texts: dict[str, dict[str, Path]] = Field(default_factory=dict)

    @field_validator("texts")
    @classmethod
    def _texts_are_valid(cls, value: dict[str, dict[str, Path]]) -> dict[str, dict[str, Path]]:
        for document, by_language in value.items():
            if document not in LEGAL_DOCUMENTS:
                raise ValueError(f"unknown document {document!r} (one of {LEGAL_DOCUMENTS})")
            for language, path in by_language.items():
                where = f"{document}.{language} ({path})"
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ValueError(f"{where}: cannot read: {exc.__class__.__name__}") from None
                problem = telegram_html_problem(text.strip())
                if problem is not None:
                    raise ValueError(f"{where}: {problem}")
        return value


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    SUPPORT = "support"


class AdminEntry(_Section):
    user_id: int
    role: Role


class Secrets(BaseSettings):
    """Secrets: only from the environment, never from ``config.yaml``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    mongo_url: SecretStr | None = Field(None, validation_alias="MONGO_URL")
    shipstation_api_key: SecretStr | None = Field(None, validation_alias="SHIPSTATION_API_KEY")
    shipstation_test_api_key: SecretStr | None = Field(
        None, validation_alias="SHIPSTATION_TEST_API_KEY"
    )
    oxapay_merchant_api_key: SecretStr | None = Field(
        None, validation_alias="OXAPAY_MERCHANT_API_KEY"
    )
    telegram_payment_provider_token: SecretStr | None = Field(
        None, validation_alias="TELEGRAM_PAYMENT_PROVIDER_TOKEN"
    )
    sentry_dsn: SecretStr | None = Field(None, validation_alias="SENTRY_DSN")

    def values(self) -> list[str]:
        """Every secret value that is set (used by log redaction)."""
        out = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None and value.get_secret_value():
                out.append(value.get_secret_value())
        return out

    def require(self, *env_names: str) -> None:
        for env_name in env_names:
            value = getattr(self, env_name.lower())
            if value is None or not value.get_secret_value().strip():
                raise ConfigError(f"missing setting {env_name} (environment variable)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHIPBOT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    telegram: TelegramSettings = TelegramSettings()
    mongo: MongoSettings = MongoSettings()
    sessions: SessionSettings = SessionSettings()
    startup: StartupSettings = StartupSettings()
    updates: UpdatesSettings = UpdatesSettings()
    outbox: OutboxSettings = OutboxSettings()
    logging: LoggingSettings = LoggingSettings()
    web: WebSettings = WebSettings()
    poller: PollerSettings = PollerSettings()
    i18n: I18nSettings = I18nSettings()
    flood: FloodSettings = FloodSettings()
    payments: PaymentsSettings = PaymentsSettings()
    shipping: ShippingSettings = ShippingSettings()
    refunds: RefundSettings = RefundSettings()
    tracking: TrackingSettings = TrackingSettings()
    broadcast: BroadcastSettings = BroadcastSettings()
    bulk: BulkSettings = BulkSettings()
    presets: PresetSettings = PresetSettings()
    admin_console: AdminConsoleSettings = AdminConsoleSettings()
    legal: LegalSettings = LegalSettings()
    admins: tuple[AdminEntry, ...] = ()
    support_contact: str = "@shiplabel_support"
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides win over the YAML values passed as init kwargs.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _legal_texts_in_known_languages(self) -> Settings:
        for document, by_language in self.legal.texts.items():
            for language in by_language:
                if language not in self.i18n.languages:
                    raise ValueError(
                        f"legal.texts.{document}.{language}: not one of i18n.languages "
                        f"{list(self.i18n.languages)}"
                    )
        return self

    def admin_role(self, user_id: int) -> Role | None:
        for entry in self.admins:
            if entry.user_id == user_id:
                return entry.role
        return None

    def redacted(self) -> dict[str, Any]:
        """Effective settings for display: secrets shown only as set/missing."""
        data = self.model_dump(mode="json")
        data["secrets"] = {
            alias: ("**********" if getattr(self.secrets, name) is not None else "<not set>")
            for name, field in Secrets.model_fields.items()
            for alias in [str(field.validation_alias)]
        }
        return data


MEMORY_URL_PREFIX = "mongomock://"
SHIPSTATION_TEST_KEY_PREFIX = "TEST_"


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def _is_local_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _unreachable_callback(url: str) -> str | None:
    """Why OxaPay could not post to ``url``, or None."""
    parts = urlsplit(url.strip())
    if _is_local_host(parts.hostname):
        return f"points to this machine ({parts.hostname}, loopback)"
    if parts.scheme != "https":
        return "is not an HTTPS URL"
    return None


def production_problems(settings: Settings, *, allow_memory: bool = False) -> list[str]:
    """Why ``python -m bot run`` refuses this configuration (one line each; no secrets).

    ``check-config`` prints the same lines as warnings. The demo, the benchmarks and the
    tests build the application themselves and are not checked.
    """
    problems: list[str] = []
    secrets = settings.secrets
    if _secret(secrets.mongo_url).startswith(MEMORY_URL_PREFIX) and not allow_memory:
        problems.append(
            "MONGO_URL=mongomock:// is an in-memory database: every balance, order and "
            "payment is lost when the process stops; point MONGO_URL at a MongoDB replica "
            "set, or pass --allow-memory for a throw-away trial"
        )
    oxapay = settings.payments.oxapay
    # A local stand-in (python -m sandbox) runs on this machine and reaches a loopback URL.
    if _secret(secrets.oxapay_merchant_api_key) and not _is_local_host(
        urlsplit(oxapay.base_url).hostname
    ):
        reason = _unreachable_callback(oxapay.callback_url)
        if reason is not None:
            shown = oxapay.callback_url or "(empty)"
            problems.append(
                f"payments.oxapay.callback_url {shown} {reason}: OxaPay posts payment "
                "callbacks from the internet over HTTPS, so no callback would arrive; set "
                "SHIPBOT_PAYMENTS__OXAPAY__CALLBACK_URL to the public https:// URL of "
                "/callbacks/oxapay (or unset OXAPAY_MERCHANT_API_KEY to turn crypto "
                "top-ups off)"
            )
    test_key = _secret(secrets.shipstation_test_api_key)
    if test_key and not test_key.startswith(SHIPSTATION_TEST_KEY_PREFIX):
        problems.append(
            "SHIPSTATION_TEST_API_KEY does not start with TEST_: ShipStation platform "
            "accounts have no sandbox, so a production key in the test slot buys real "
            "postage; set a ShipStation API TEST_ key there, or leave it unset"
        )
    return problems


def _format_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "settings"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {str(value)[:40]!r})"
    return f"invalid setting {loc}: {err['msg']}{shown}"


def load_settings(config_path: Path | None = None) -> Settings:
    """Read ``config.yaml`` and the environment; raise ``ConfigError`` with one line."""
    path = config_path or Path(os.environ.get(CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed config file {path}: {str(exc).splitlines()[0]}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"malformed config file {path}: top level must be a mapping")
    if "secrets" in raw:
        raise ConfigError("setting secrets: secrets are read only from the environment")
    try:
        secrets = Secrets()
        return Settings(**raw, secrets=secrets)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
