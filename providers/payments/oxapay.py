"""OxaPay v1 merchant API client (https://api.oxapay.com/v1/..., header `merchant_api_key`)
and webhook helpers (HMAC-SHA512 signature check, payload parsing)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import string
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from models.money import cents_to_decimal, decimal_to_cents
from models.payments import Invoice, OxaPayCallback, PaymentInfo, PaymentTx
from providers.base import (
    BaseProviderClient,
    Clock,
    HttpResult,
    MalformedResponse,
    Sleep,
    StateChangeCallback,
    as_dict,
    as_list,
    decode_json,
    opt_int,
    opt_str,
    opt_unix_datetime,
    req_str,
    to_amount,
)
from providers.errors import (
    InvalidCallback,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "PROVIDER",
    "OxaPayClient",
    "parse_callback",
    "signature_from_headers",
    "verify_callback_signature",
]

logger = logging.getLogger(__name__)

PROVIDER = "oxapay"
DEFAULT_BASE_URL = "https://api.oxapay.com"
_HEX = frozenset(string.hexdigits)
_PAGE_SIZE = 200


class SecretLike(Protocol):
    def get_secret_value(self) -> str: ...


MerchantKey = str | SecretLike | Callable[[], str]


def _key_getter(key: MerchantKey) -> Callable[[], str]:
    if isinstance(key, str):
        return lambda: key
    getter = getattr(key, "get_secret_value", None)
    if callable(getter):
        return lambda: str(getter())
    if callable(key):
        return lambda: str(key())
    raise TypeError("merchant_api_key must be a str, a SecretStr-like object or a callable")


# --------------------------------------------------------------------------- parsing


def _amount_cents(value: Any, what: str) -> int:
    return decimal_to_cents(to_amount(value, what))


def _opt_amount(obj: Mapping[str, Any], key: str) -> Decimal | None:
    value = obj.get(key)
    return None if value is None or value == "" else to_amount(value, f"tx {key}")


def _parse_tx(raw: Any) -> PaymentTx:
    """A transaction is in the payer's coin (`currency`, `received_amount`); `value` is
    what it is worth in the invoice currency."""
    obj = as_dict(raw, "tx")
    received = _opt_amount(obj, "received_amount")
    return PaymentTx(
        tx_hash=opt_str(obj, "tx_hash"),
        status=(opt_str(obj, "status") or "").lower() or None,
        amount=received if received is not None else _opt_amount(obj, "amount"),
        currency=(opt_str(obj, "currency") or "").upper() or None,
        network=opt_str(obj, "network"),
        confirmations=opt_int(obj, "confirmations"),
        date=opt_unix_datetime(obj, "date"),
        value=_opt_amount(obj, "value"),
        rate=_opt_amount(obj, "rate"),
    )


def _paid_cents(txs: tuple[PaymentTx, ...], currency: str) -> int | None:
    """What the transactions are worth in the invoice currency: their converted `value`
    (a coin's own amount only when the coin is the invoice currency). None when there
    are none, or when one of them cannot be valued: the received amount is unknown."""
    if not txs:
        return None
    total = Decimal(0)
    for tx in txs:
        if tx.value is not None:
            total += tx.value
        elif tx.currency == currency and tx.amount is not None:
            total += tx.amount
        else:
            return None
    return decimal_to_cents(total)


def _parse_payment(raw: Any) -> PaymentInfo:
    obj = as_dict(raw, "payment")
    currency = (opt_str(obj, "currency") or "USD").upper()
    txs = tuple(_parse_tx(tx) for tx in as_list(obj.get("txs"), "txs"))
    return PaymentInfo(
        track_id=req_str(obj, "track_id"),
        status=req_str(obj, "status").strip().lower(),
        amount_cents=_amount_cents(obj.get("amount"), "amount"),
        currency=currency,
        order_id=opt_str(obj, "order_id"),
        expires_at=opt_unix_datetime(obj, "expired_at"),
        paid_amount_cents=_paid_cents(txs, currency),
        created_at=opt_unix_datetime(obj, "date"),
        type=opt_str(obj, "type"),
        txs=txs,
    )


# --------------------------------------------------------------------------- webhook helpers


def signature_from_headers(headers: Mapping[str, str]) -> str | None:
    """The `HMAC` header value, looked up case-insensitively in any mapping."""
    for name, value in headers.items():
        if name.lower() == "hmac":
            return value
    return None


def verify_callback_signature(raw_body: bytes, hmac_header: str | None, key: str) -> bool:
    """True when `hmac_header` is the hex HMAC-SHA512 of the raw body under `key`."""
    if not hmac_header or not key:
        return False
    provided = hmac_header.strip().lower()
    if len(provided) != 128 or not set(provided) <= _HEX:
        return False
    expected = hmac.new(key.encode("utf-8"), raw_body, hashlib.sha512).hexdigest()
    return hmac.compare_digest(expected, provided)


def parse_callback(raw_body: bytes) -> OxaPayCallback:
    """Parses a callback body. Raises InvalidCallback on bad JSON or missing fields.
    The status is compared case-insensitively and stored lower-cased."""
    try:
        obj = as_dict(decode_json(raw_body), "callback")
        currency = (opt_str(obj, "currency") or "").upper()
        if not currency:
            raise MalformedResponse("currency is missing")
        amount = to_amount(obj.get("amount"), "amount")
        txs = tuple(_parse_tx(tx) for tx in as_list(obj.get("txs"), "txs"))
        value = obj.get("value")
        return OxaPayCallback(
            track_id=req_str(obj, "track_id"),
            status=req_str(obj, "status").strip().lower(),
            type=(opt_str(obj, "type") or "").lower() or None,
            amount=amount,
            amount_cents=decimal_to_cents(amount),
            currency=currency,
            order_id=opt_str(obj, "order_id"),
            paid_amount_cents=_paid_cents(txs, currency),
            value=None if value is None else to_amount(value, "value"),
            date=opt_unix_datetime(obj, "date"),
            txs=txs,
        )
    except (MalformedResponse, ValueError, TypeError, ArithmeticError) as exc:
        raise InvalidCallback(PROVIDER, f"invalid callback: {exc}", operation="callback") from None


# --------------------------------------------------------------------------- client


class OxaPayClient(BaseProviderClient):
    """OxaPay v1 merchant client."""

    def __init__(
        self,
        base_url: str,
        merchant_api_key: MerchantKey,
        *,
        sandbox: bool = False,
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
        lookup_window: timedelta = timedelta(days=3),
        clock_skew: timedelta = timedelta(minutes=10),
        lookup_max_pages: int = 5,
    ) -> None:
        super().__init__(
            PROVIDER,
            base_url,
            timeout_total=timeout_total,
            timeout_connect=timeout_connect,
            max_attempts=max_attempts,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            backoff_jitter=backoff_jitter,
            max_retry_after=max_retry_after,
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            on_state_change=on_state_change,
            clock=clock,
            sleep=sleep,
        )
        self._key = _key_getter(merchant_api_key)
        self._sandbox = sandbox
        self._lookup_window = lookup_window
        self._clock_skew = clock_skew
        self._lookup_max_pages = lookup_max_pages

    # ----------------------------------------------------------------- hooks

    def _auth_headers(self) -> dict[str, str]:
        key = self._key()
        if not key:
            raise ProviderAuthError(PROVIDER, "no merchant API key configured")
        return {"merchant_api_key": key}

    def _secrets(self) -> Collection[str]:
        try:
            return (self._key(),)
        except Exception:
            return ()

    @staticmethod
    def _envelope_error(result: HttpResult) -> dict[str, Any]:
        try:
            data = result.json()
        except (MalformedResponse, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        error = data.get("error")
        details = dict(error) if isinstance(error, dict) else {}
        if not details.get("message") and isinstance(data.get("message"), str):
            details["message"] = data["message"]
        return details

    def _error_message(self, result: HttpResult) -> str:
        return str(self._envelope_error(result).get("message") or "")

    def _rejected(self, operation: str, result: HttpResult) -> ProviderError:
        return self._error_from_envelope(operation, self._envelope_error(result), result.status)

    def _error_from_envelope(
        self, operation: str, error: Mapping[str, Any], status: int
    ) -> ProviderError:
        message = self._redact(str(error.get("message") or f"request rejected (HTTP {status})"))
        key = str(error.get("key") or "") or None
        error_type = str(error.get("type") or "") or None
        if status in (401, 403):
            return ProviderAuthError(PROVIDER, message, operation=operation, status=status)
        if status == 429:
            return ProviderRateLimited(PROVIDER, message, operation=operation, status=status)
        if status >= 500:
            return ProviderUnavailable(
                PROVIDER,
                message,
                operation=operation,
                status=status,
                reason="server_error",
                outcome_unknown=True,
            )
        cls = ProviderNotFound if status == 404 else ProviderRejected
        return cls(
            PROVIDER,
            message,
            operation=operation,
            status=status,
            code=error_type or key or ("not_found" if status == 404 else f"http_{status}"),
            field=key,
            error_type=error_type,
        )

    def _classify(self, operation: str, result: HttpResult) -> ProviderError | None:
        """Also treats an error inside a 2xx envelope as an error of this attempt, so it
        is retried and counted by the breaker like its HTTP twin."""
        if 200 <= result.status < 300:
            try:
                envelope = result.json()
            except (MalformedResponse, ValueError):
                return None  # reported as a malformed response by `_data`
            if isinstance(envelope, dict):
                status = envelope.get("status")
                error = envelope.get("error")
                failed = isinstance(status, int) and not isinstance(status, bool) and status != 200
                if failed or (isinstance(error, dict) and error):
                    details = dict(error) if isinstance(error, dict) else {}
                    details.setdefault("message", envelope.get("message"))
                    code = status if isinstance(status, int) and status >= 400 else 400
                    return self._error_from_envelope(operation, details, code)
            return None
        return super()._classify(operation, result)

    def _data(self, operation: str, result: HttpResult) -> dict[str, Any]:
        """The `data` object of a successful envelope."""
        with self._parsing(operation):
            return as_dict(as_dict(result.json(), "response").get("data"), "data")

    # ----------------------------------------------------------------- API

    async def create_invoice(
        self,
        amount_cents: int,
        currency: str,
        order_id: str,
        lifetime_minutes: int,
        callback_url: str,
        description: str,
        return_url: str | None = None,
    ) -> Invoice:
        """POST /v1/payment/invoice. Not idempotent: when the outcome of an attempt is
        unknown (timeout/5xx/dropped connection) the invoice is first looked up by
        `order_id`; the create is retried only when none exists."""
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        if not order_id:
            raise ValueError("order_id is required: it is the recovery key")
        body: dict[str, Any] = {
            "amount": cents_to_decimal(amount_cents),
            "currency": currency,
            "lifetime": lifetime_minutes,
            "order_id": order_id,
            "callback_url": callback_url,
            "description": description,
            "sandbox": self._sandbox,
        }
        if return_url:
            body["return_url"] = return_url
        started = datetime.now(UTC)
        async for attempt in self._retrying("create_invoice", self._max_attempts):
            with attempt:
                try:
                    result = await self._request(
                        "create_invoice",
                        "POST",
                        "/v1/payment/invoice",
                        json_body=body,
                        idempotent=False,
                    )
                except ProviderUnavailable as exc:
                    if not exc.retryable or not exc.outcome_unknown:
                        raise
                    existing = await self._recover_invoice(exc, order_id, amount_cents, started)
                    if existing is not None:
                        return existing
                    raise
                return self._parse_invoice(result, amount_cents, currency, order_id)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _recover_invoice(
        self,
        failure: ProviderUnavailable,
        order_id: str,
        amount_cents: int,
        started: datetime,
    ) -> Invoice | None:
        logger.warning(
            "invoice create outcome unknown, looking up: provider=%s order_id=%s reason=%s",
            PROVIDER,
            order_id,
            failure.reason,
        )
        try:
            payment = await self.find_payment_by_order_id(order_id, created_after=started)
        except ProviderError as lookup_error:
            # We cannot tell whether the invoice exists: creating another could bill twice.
            raise ProviderUnavailable(
                PROVIDER,
                f"invoice creation outcome unknown; lookup failed ({type(lookup_error).__name__})",
                operation="create_invoice",
                retryable=False,
                reason=failure.reason,
                outcome_unknown=True,
            ) from None
        if payment is None:
            return None
        if payment.amount_cents != amount_cents:
            raise ProviderRejected(
                PROVIDER,
                "an invoice with this order_id exists with another amount",
                operation="create_invoice",
                code="order_id_conflict",
                field="order_id",
            )
        logger.info(
            "recovered existing invoice: provider=%s order_id=%s track_id=%s",
            PROVIDER,
            order_id,
            payment.track_id,
        )
        return Invoice(
            track_id=payment.track_id,
            payment_url=None,
            amount_cents=payment.amount_cents,
            currency=payment.currency,
            order_id=payment.order_id,
            expires_at=payment.expires_at,
            created_at=payment.created_at,
            recovered=True,
        )

    def _parse_invoice(
        self, result: HttpResult, amount_cents: int, currency: str, order_id: str
    ) -> Invoice:
        data = self._data("create_invoice", result)
        with self._parsing("create_invoice"):
            return Invoice(
                track_id=req_str(data, "track_id"),
                payment_url=req_str(data, "payment_url"),
                amount_cents=amount_cents,
                currency=currency.upper(),
                order_id=order_id,
                expires_at=opt_unix_datetime(data, "expired_at"),
                created_at=opt_unix_datetime(data, "date"),
            )

    async def get_payment(self, track_id: str) -> PaymentInfo:
        """GET /v1/payment/{track_id} (idempotent, retried). 404 -> ProviderNotFound."""
        if not track_id or not track_id.isalnum():
            raise ValueError("track_id must be alphanumeric")
        result = await self._request(
            "get_payment", "GET", f"/v1/payment/{track_id}", idempotent=True
        )
        data = self._data("get_payment", result)
        with self._parsing("get_payment"):
            return _parse_payment(data)

    async def find_payment_by_order_id(
        self, order_id: str, *, created_after: datetime | None = None
    ) -> PaymentInfo | None:
        """The newest invoice carrying `order_id`, or None.

        The v1 payment history (GET /v1/payment) documents no `order_id` filter, so this
        pages through invoices created since `created_after` (default: the lookup window)
        minus a clock-skew margin, newest first, and matches `order_id` locally."""
        since = (created_after or datetime.now(UTC) - self._lookup_window) - self._clock_skew
        for page in range(1, self._lookup_max_pages + 1):
            result = await self._request(
                "list_payments",
                "GET",
                "/v1/payment",
                params={
                    "type": "invoice",
                    "from_date": str(int(since.timestamp())),
                    "sort_by": "create_date",
                    "sort_type": "desc",
                    "page": str(page),
                    "size": str(_PAGE_SIZE),
                },
                idempotent=True,
            )
            data = self._data("list_payments", result)
            with self._parsing("list_payments"):
                items = as_list(data.get("list"), "list")
                meta = data.get("meta")
                last_page = opt_int(meta, "last_page") if isinstance(meta, dict) else None
                for item in items:
                    if opt_str(as_dict(item, "payment"), "order_id") == order_id:
                        return _parse_payment(item)
            if (
                not items
                or len(items) < _PAGE_SIZE
                or (last_page is not None and page >= last_page)
            ):
                return None
        logger.warning(
            "order_id lookup stopped at page limit: provider=%s order_id=%s pages=%s",
            PROVIDER,
            order_id,
            self._lookup_max_pages,
        )
        return None
