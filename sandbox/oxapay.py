"""Fake OxaPay v1 merchant API: an aiohttp app on 127.0.0.1 for the demo and the tests.

Wire format follows OxaPay v1 (`/v1/payment...`, header `merchant_api_key`, envelope
`{"data", "message", "error", "status", "version"}`). Invoices get a payment page served
by the fake (`/pay/{track_id}`, with a "pay" button for demos). Callbacks are POSTed as
JSON to the invoice's `callback_url` with header `HMAC` = hex HMAC-SHA512(raw body,
merchant key), with knobs for duplicates, concurrency, order, signature and casing.

As live: an invoice in USD is paid in a coin (USDT on Tron by default). Its `amount` and
`currency` stay in USD; each `txs[]` item carries the coin (`currency`, `network`),
`sent_amount`/`received_amount` in that coin, `rate` (USD per coin) and `value`/
`sent_value`, the converted USD amount. Statuses are capitalised (`Paying`, `Paid`,
`Underpaid`, `Expired`) in callbacks and in payment information.

The v1 payment history (`GET /v1/payment`) documents no `order_id` filter; the fake
ignores `order_id` unless constructed with `order_id_filter=True`.

Control API: Python methods on `FakeOxaPay`, and over HTTP under `/_control/...`
(see `_control_routes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import html
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

__all__ = [
    "FAILURE_KINDS",
    "CallRecord",
    "CallbackDelivery",
    "CallbackOptions",
    "FakeInvoice",
    "FakeOxaPay",
    "sign",
]

VERSION = "1.0.0"

FAILURE_KINDS = frozenset({"error_500", "error_503", "rate_limit", "slow", "timeout_after_create"})
_FAILURE_ALIASES = {"500": "error_500", "503": "error_503", "429": "rate_limit", "timeout": "slow"}
OPERATIONS = frozenset({"create_invoice", "get_payment", "list_payments"})

# USD per coin, and the network a payment in that coin arrives on (fixed for the fake).
COIN_RATES: dict[str, Decimal] = {
    "USDT": Decimal("0.9997"),
    "USDC": Decimal("1.0001"),
    "TRX": Decimal("0.2450"),
    "BTC": Decimal("64250.00"),
    "ETH": Decimal("3150.00"),
    "LTC": Decimal("81.20"),
}
COIN_NETWORKS: dict[str, str] = {
    "USDT": "Tron Network",
    "USDC": "Ethereum Network",
    "TRX": "Tron Network",
    "BTC": "Bitcoin Network",
    "ETH": "Ethereum Network",
    "LTC": "Litecoin Network",
}
DEFAULT_COIN = "USDT"
_COIN_PLACES = Decimal("0.00000001")


def sign(body: bytes, key: str) -> str:
    """Hex HMAC-SHA512 of `body` under `key`, as OxaPay puts in the `HMAC` header."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha512).hexdigest()


def _dumps(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


def _envelope(
    status: int,
    message: str,
    *,
    data: Any = None,
    error: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {
        "data": data if data is not None else {},
        "message": message,
        "error": dict(error) if error else {},
        "status": status,
        "version": VERSION,
    }
    return web.Response(
        text=_dumps(body), status=status, content_type="application/json", headers=headers
    )


def _invalid(key: str, message: str) -> web.Response:
    return _envelope(
        400,
        "Validation error",
        error={"type": "validation_error", "key": key, "message": message},
    )


def _to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


# --------------------------------------------------------------------------- state


@dataclass
class CallRecord:
    operation: str
    method: str
    path: str
    authorized: bool
    status: int = 0


@dataclass
class _Failure:
    kind: str
    remaining: int
    delay: float
    retry_after: int | None


@dataclass(frozen=True)
class CallbackOptions:
    """How callbacks are delivered.

    deliver: False sends none. duplicates: copies of each callback. concurrent: send the
    copies at once. out_of_order: for a payment, send `paid` before `paying`.
    signature: "valid" | "bad" (signed with a wrong key) | "missing" (no HMAC header).
    capitalized_status: "Paid"/"Paying" as the live service sends (False: lower case, as
    the v1 docs' text writes them).
    retry_delays: seconds between redeliveries when the receiver does not answer 200 "ok"
    (the live service retries 4 times over hours; empty = no retry)."""

    deliver: bool = True
    duplicates: int = 1
    concurrent: bool = False
    out_of_order: bool = False
    signature: str = "valid"
    capitalized_status: bool = True
    retry_delays: tuple[float, ...] = ()


@dataclass
class CallbackDelivery:
    track_id: str
    status: str
    copy: int
    attempt: int
    signature: str
    http_status: int | None
    response_text: str
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.http_status == 200 and self.response_text.strip().lower() == "ok"


@dataclass
class FakeInvoice:
    track_id: str
    amount: Decimal
    currency: str
    lifetime: int
    order_id: str
    callback_url: str
    return_url: str
    description: str
    email: str
    thanks_message: str
    fee_paid_by_payer: int
    under_paid_coverage: Decimal
    mixed_payment: bool
    sandbox: bool
    date: int
    expired_at: int
    status: str = "new"
    paid_amount: Decimal = Decimal(0)
    pay_date: int | None = None
    txs: list[dict[str, Any]] = field(default_factory=list)


class FakeOxaPay:
    """In-memory OxaPay v1 stand-in. Start with `await fake.start()`; the API is at
    `fake.base_url` (`/v1/...`)."""

    def __init__(
        self,
        *,
        merchant_api_key: str = "fake-oxapay-merchant-key",
        latency_seconds: float = 0.1,
        instant: bool = False,
        order_id_filter: bool = False,
        clock: Callable[[], float] = time.time,
        callback_options: CallbackOptions | None = None,
        callback_timeout: float = 5.0,
    ) -> None:
        self.merchant_api_key = merchant_api_key
        self.latency_seconds = latency_seconds
        self.instant = instant
        self.order_id_filter = order_id_filter
        self._clock = clock
        self.callback_options = callback_options or CallbackOptions()
        self._callback_timeout = callback_timeout
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self.app = self._build_app()
        self.reset()

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("fake OxaPay is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            return self.base_url
        self._stopping = asyncio.Event()
        if self.app.frozen:
            self.app = self._build_app()
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self._base_url = f"http://{bound_host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        http, self._http = self._http, None
        if http is not None:
            await http.close()
        self._base_url = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------- control (Python)

    def reset(self) -> None:
        self._rng = random.Random(4242)
        self.invoices: dict[str, FakeInvoice] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self.calls: list[CallRecord] = []
        self.deliveries: list[CallbackDelivery] = []

    def set_instant(self, instant: bool = True) -> None:
        self.instant = instant

    def set_callback_options(self, **options: Any) -> CallbackOptions:
        """Changes the default callback delivery options (see CallbackOptions)."""
        self.callback_options = self._options(options)
        return self.callback_options

    def inject_failure(
        self,
        operation: str,
        kind: str,
        times: int = 1,
        *,
        delay: float = 2.0,
        retry_after: int | None = 1,
    ) -> None:
        """The next `times` calls of `operation` ("*" = any) fail with `kind`: error_500,
        error_503, rate_limit (429), slow (answer after `delay` s, still processing), or
        timeout_after_create (the invoice is created, the answer comes after `delay` s)."""
        kind = _FAILURE_ALIASES.get(kind, kind)
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        self._failures.setdefault(operation, []).append(
            _Failure(kind, max(1, times), delay, retry_after)
        )

    def clear_failures(self) -> None:
        self._failures.clear()

    def call_count(self, operation: str | None = None) -> int:
        return sum(1 for c in self.calls if operation is None or c.operation == operation)

    def call_counts(self) -> dict[str, int]:
        return dict(Counter(c.operation for c in self.calls))

    def invoices_for_order(self, order_id: str) -> list[FakeInvoice]:
        return [inv for inv in self.invoices.values() if inv.order_id == order_id]

    def invoice(self, track_id: str) -> FakeInvoice:
        try:
            return self._refresh(self.invoices[track_id])
        except KeyError:
            raise KeyError(f"no invoice {track_id}") from None

    async def mark_paying(
        self, track_id: str, *, pay_currency: str | None = None, **options: Any
    ) -> list[CallbackDelivery]:
        """Payer sent funds, not yet confirmed: status `paying`, one callback."""
        inv = self.invoice(track_id)
        coin = self._coin(inv, pay_currency)
        tx = self._new_tx(inv, inv.amount, coin, confirmed=False)
        inv.txs = [tx]
        inv.status = "paying"
        return await self._notify(inv, [self._payload(inv, "paying")], self._options(options))

    async def mark_paid(
        self,
        track_id: str,
        paid_amount: Decimal | int | str | None = None,
        *,
        pay_currency: str | None = None,
        **options: Any,
    ) -> list[CallbackDelivery]:
        """Marks the invoice `paid` (optionally with a different paid amount, in the
        invoice currency: the converted `value`) paid in `pay_currency` (a coin, default
        USDT). Sends the `paying` then `paid` callbacks (only `paid` if already paying)."""
        return await self._settle(track_id, "paid", paid_amount, pay_currency, options)

    async def mark_underpaid(
        self,
        track_id: str,
        paid_amount: Decimal | int | str,
        *,
        pay_currency: str | None = None,
        **options: Any,
    ) -> list[CallbackDelivery]:
        return await self._settle(track_id, "underpaid", paid_amount, pay_currency, options)

    async def mark_expired(self, track_id: str, **options: Any) -> list[CallbackDelivery]:
        inv = self.invoice(track_id)
        inv.status = "expired"
        inv.expired_at = min(inv.expired_at, int(self._clock()))
        return await self._notify(inv, [self._payload(inv, "expired")], self._options(options))

    async def resend_callback(self, track_id: str, **options: Any) -> list[CallbackDelivery]:
        """Sends the callback for the invoice's current status again."""
        inv = self.invoice(track_id)
        return await self._notify(inv, [self._payload(inv, inv.status)], self._options(options))

    # ----------------------------------------------------------------- state changes

    def _options(self, overrides: Mapping[str, Any]) -> CallbackOptions:
        options = dataclasses.replace(self.callback_options, **overrides)
        if options.signature not in ("valid", "bad", "missing"):
            raise ValueError("signature must be valid, bad or missing")
        if options.duplicates < 1:
            raise ValueError("duplicates must be >= 1")
        return options

    async def _settle(
        self,
        track_id: str,
        status: str,
        paid_amount: Decimal | int | str | None,
        pay_currency: str | None,
        overrides: Mapping[str, Any],
    ) -> list[CallbackDelivery]:
        options = self._options(overrides)
        inv = self.invoice(track_id)
        amount = inv.amount if paid_amount is None else _to_decimal(paid_amount)
        if amount is None or amount < 0:
            raise ValueError("paid_amount must be a non-negative number")
        currency = self._coin(inv, pay_currency)
        payloads = []
        if inv.status in ("new", "waiting"):
            inv.txs = [self._new_tx(inv, amount, currency, confirmed=False)]
            inv.status = "paying"
            payloads.append(self._payload(inv, "paying"))
        inv.txs = [self._new_tx(inv, amount, currency, confirmed=True)]
        inv.status = status
        inv.paid_amount = amount
        inv.pay_date = int(self._clock())
        payloads.append(self._payload(inv, status))
        if options.out_of_order:
            payloads.reverse()
        return await self._notify(inv, payloads, options)

    def _coin(self, inv: FakeInvoice, pay_currency: str | None) -> str:
        coin = (pay_currency or DEFAULT_COIN).upper()
        if coin != inv.currency and coin not in COIN_RATES:
            raise ValueError(f"the fake has no rate for {coin!r}")
        return coin

    def _new_tx(
        self, inv: FakeInvoice, value: Decimal, coin: str, *, confirmed: bool
    ) -> dict[str, Any]:
        """One transaction worth `value` (invoice currency) paid in `coin`."""
        previous = inv.txs[0]["tx_hash"] if inv.txs else None
        rate = Decimal(1) if coin == inv.currency else COIN_RATES[coin]
        coin_amount = (value / rate).quantize(_COIN_PLACES)
        return {
            "tx_hash": previous or "0x" + "".join(self._rng.choices("0123456789abcdef", k=64)),
            "amount": coin_amount,
            "value": value,
            "rate": rate,
            "currency": coin,
            "network": COIN_NETWORKS.get(coin, "Tron Network"),
            "address": "TFakeAddr" + inv.track_id,
            "status": "confirmed" if confirmed else "confirming",
            "confirmations": 20 if confirmed else 1,
            "auto_convert": {"processed": False, "amount": Decimal(0), "currency": coin},
            "auto_withdrawal": {"processed": False},
            "date": int(self._clock()),
        }

    @staticmethod
    def _tx_json(tx: Mapping[str, Any]) -> dict[str, Any]:
        """A transaction as callbacks and payment information show it."""
        return {
            "status": tx["status"],
            "tx_hash": tx["tx_hash"],
            "sent_amount": tx["amount"],
            "received_amount": tx["amount"],
            "value": tx["value"],
            "sent_value": tx["value"],
            "currency": tx["currency"],
            "network": tx["network"],
            "sender_address": "TFakeSender",
            "address": tx["address"],
            "rate": tx["rate"],
            "confirmations": tx["confirmations"],
            "auto_convert_amount": tx["auto_convert"]["amount"],
            "auto_convert_currency": tx["auto_convert"]["currency"],
            "date": tx["date"],
        }

    @staticmethod
    def _status_text(status: str, capitalized: bool = True) -> str:
        return status.capitalize() if capitalized else status

    def _refresh(self, inv: FakeInvoice) -> FakeInvoice:
        if inv.status in ("new", "waiting") and self._clock() >= inv.expired_at:
            inv.status = "expired"
        return inv

    def _payment_json(self, inv: FakeInvoice) -> dict[str, Any]:
        self._refresh(inv)
        return {
            "track_id": inv.track_id,
            "type": "invoice",
            "amount": inv.amount,
            "currency": inv.currency,
            "status": self._status_text(inv.status),
            "mixed_payment": inv.mixed_payment,
            "callback_url": inv.callback_url,
            "description": inv.description,
            "email": inv.email,
            "fee_paid_by_payer": inv.fee_paid_by_payer,
            "lifetime": inv.lifetime,
            "order_id": inv.order_id,
            "under_paid_coverage": inv.under_paid_coverage,
            "return_url": inv.return_url,
            "thanks_message": inv.thanks_message,
            "expired_at": inv.expired_at,
            "date": inv.date,
            # The documented fields (amount in the coin, auto_convert, auto_withdrawal)
            # and the ones callbacks carry (received_amount, value, rate, ...).
            "txs": [
                {
                    **self._tx_json(tx),
                    "amount": tx["amount"],
                    "auto_convert": dict(tx["auto_convert"]),
                    "auto_withdrawal": dict(tx["auto_withdrawal"]),
                }
                for tx in inv.txs
            ],
        }

    def _payload(self, inv: FakeInvoice, status: str) -> dict[str, Any]:
        """A snapshot of the webhook body for `status`, taken now."""
        txs = [self._tx_json(tx) for tx in inv.txs]
        value = sum((tx["value"] for tx in inv.txs), Decimal(0))
        return {
            "track_id": inv.track_id,
            "status": status,
            "type": "invoice",
            "module_name": "OxaPay",
            "amount": inv.amount,
            "value": value,
            "sent_value": value,
            "currency": inv.currency,
            "order_id": inv.order_id,
            "email": inv.email,
            "note": "",
            "fee_paid_by_payer": inv.fee_paid_by_payer,
            "under_paid_coverage": inv.under_paid_coverage,
            "description": inv.description,
            "date": int(self._clock()),
            "txs": txs,
        }

    # ----------------------------------------------------------------- callbacks

    async def _notify(
        self,
        inv: FakeInvoice,
        payloads: list[dict[str, Any]],
        options: CallbackOptions,
    ) -> list[CallbackDelivery]:
        if not options.deliver or not inv.callback_url:
            return []
        results: list[CallbackDelivery] = []
        for payload in payloads:
            payload = {
                **payload,
                "status": self._status_text(str(payload["status"]), options.capitalized_status),
            }
            body = _dumps(payload).encode("utf-8")
            headers = {"Content-Type": "application/json"}
            if options.signature == "valid":
                headers["HMAC"] = sign(body, self.merchant_api_key)
            elif options.signature == "bad":
                headers["HMAC"] = sign(body, "not-the-merchant-key")
            sends = [
                self._send(inv.callback_url, body, headers, inv.track_id, payload, copy, options)
                for copy in range(1, options.duplicates + 1)
            ]
            if options.concurrent:
                for batch in await asyncio.gather(*sends):
                    results.extend(batch)
            else:
                for send in sends:
                    results.extend(await send)
        return results

    async def _send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        track_id: str,
        payload: Mapping[str, Any],
        copy: int,
        options: CallbackOptions,
    ) -> list[CallbackDelivery]:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._callback_timeout)
            )
        results = []
        delays = (0.0, *options.retry_delays)
        for attempt, delay in enumerate(delays, start=1):
            await self._pause(delay)
            delivery = CallbackDelivery(
                track_id=track_id,
                status=str(payload["status"]),
                copy=copy,
                attempt=attempt,
                signature=options.signature,
                http_status=None,
                response_text="",
            )
            try:
                async with self._http.post(url, data=body, headers=headers) as response:
                    delivery.http_status = response.status
                    delivery.response_text = (await response.text())[:200]
            except (aiohttp.ClientError, TimeoutError) as exc:
                delivery.error = type(exc).__name__
            self.deliveries.append(delivery)
            results.append(delivery)
            if delivery.acknowledged:
                break
        return results

    # ----------------------------------------------------------------- plumbing

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(
            "/v1/payment/invoice", self._endpoint("create_invoice", self._create_invoice)
        )
        app.router.add_get("/v1/payment", self._endpoint("list_payments", self._list_payments))
        app.router.add_get("/v1/payment/", self._endpoint("list_payments", self._list_payments))
        app.router.add_get(
            "/v1/payment/{track_id}", self._endpoint("get_payment", self._get_payment)
        )
        app.router.add_get("/pay/{track_id}", self._pay_page)
        app.router.add_post("/pay/{track_id}", self._pay_submit)
        for method, path, handler in self._control_routes():
            app.router.add_route(method, path, handler)
        return app

    def _endpoint(
        self, operation: str, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            key = request.headers.get("merchant_api_key", "")
            authorized = bool(key) and hmac.compare_digest(key, self.merchant_api_key)
            record = CallRecord(operation, request.method, request.path, authorized)
            self.calls.append(record)
            response = await self._serve(request, record, handler)
            record.status = response.status
            return response

        return endpoint

    async def _serve(
        self,
        request: web.Request,
        record: CallRecord,
        handler: Callable[[web.Request], Awaitable[web.Response]],
    ) -> web.Response:
        await self._pause(0.0 if self.instant else self.latency_seconds)
        if not record.authorized:
            return _envelope(
                401,
                "Invalid merchant API key",
                error={
                    "type": "authentication_error",
                    "key": "merchant_api_key",
                    "message": "The merchant API key is invalid.",
                },
            )
        failure = self._take_failure(record.operation)
        if failure is None:
            return await handler(request)
        if failure.kind == "slow":
            await self._pause(failure.delay)
            return await handler(request)
        if failure.kind == "timeout_after_create":
            response = await handler(request)
            await self._pause(failure.delay)
            return response
        if failure.kind == "rate_limit":
            headers = (
                {"Retry-After": str(failure.retry_after)}
                if failure.retry_after is not None
                else {}
            )
            return _envelope(
                429,
                "Too many requests",
                error={"type": "rate_limit", "key": "", "message": "Too many requests."},
                headers=headers,
            )
        status = 503 if failure.kind == "error_503" else 500
        return _envelope(
            status,
            "Server error",
            error={"type": "server_error", "key": "", "message": "Internal server error."},
        )

    def _take_failure(self, operation: str) -> _Failure | None:
        for key in (operation, "*"):
            queue = self._failures.get(key)
            if queue:
                failure = queue[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    queue.pop(0)
                return failure
        return None

    # ----------------------------------------------------------------- API handlers

    async def _create_invoice(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read(), parse_float=Decimal)
        except ValueError:
            return _invalid("body", "The request body must be valid JSON.")
        if not isinstance(body, dict):
            return _invalid("body", "The request body must be a JSON object.")
        amount = _to_decimal(body.get("amount"))
        if "amount" not in body:
            return _invalid("amount", "The amount field is required.")
        if amount is None or amount <= 0:
            return _invalid("amount", "The amount must be a positive number.")
        lifetime = body.get("lifetime", 60)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            return _invalid("lifetime", "The lifetime field must be an integer.")
        if not 15 <= lifetime <= 2880:
            return _invalid("lifetime", "The lifetime must be between 15 and 2880.")
        fee = body.get("fee_paid_by_payer", 0)
        if fee not in (0, 1) or isinstance(fee, bool):
            return _invalid("fee_paid_by_payer", "The fee_paid_by_payer must be 0 or 1.")
        coverage = _to_decimal(body.get("under_paid_coverage", 0))
        if coverage is None or not 0 <= coverage <= 60:
            return _invalid("under_paid_coverage", "The under_paid_coverage must be 0 to 60.")
        strings: dict[str, str] = {}
        for name in (
            "currency",
            "order_id",
            "callback_url",
            "return_url",
            "description",
            "email",
            "thanks_message",
        ):
            value = body.get(name, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                return _invalid(name, f"The {name} field must be a string.")
            strings[name] = value
        for name in ("callback_url", "return_url"):
            if strings[name] and not strings[name].startswith(("http://", "https://")):
                return _invalid(name, f"The {name} must be a valid URL.")
        now = int(self._clock())
        track_id = self._new_track_id()
        inv = FakeInvoice(
            track_id=track_id,
            amount=amount,
            currency=(strings["currency"] or "USD").upper(),
            lifetime=lifetime,
            order_id=strings["order_id"],
            callback_url=strings["callback_url"],
            return_url=strings["return_url"],
            description=strings["description"],
            email=strings["email"],
            thanks_message=strings["thanks_message"],
            fee_paid_by_payer=int(fee),
            under_paid_coverage=coverage,
            mixed_payment=bool(body.get("mixed_payment", False)),
            sandbox=bool(body.get("sandbox", False)),
            date=now,
            expired_at=now + lifetime * 60,
        )
        self.invoices[track_id] = inv
        return _envelope(
            200,
            "Operation completed successfully!",
            data={
                "track_id": track_id,
                "payment_url": f"{request.scheme}://{request.host}/pay/{track_id}",
                "expired_at": inv.expired_at,
                "date": inv.date,
            },
        )

    def _new_track_id(self) -> str:
        while True:
            track_id = str(self._rng.randint(100_000_000, 999_999_999))
            if track_id not in self.invoices:
                return track_id

    async def _get_payment(self, request: web.Request) -> web.Response:
        inv = self.invoices.get(request.match_info["track_id"])
        if inv is None:
            return _envelope(
                404,
                "Not found",
                error={"type": "not_found", "key": "track_id", "message": "Payment not found."},
            )
        return _envelope(200, "Operation completed successfully!", data=self._payment_json(inv))

    async def _list_payments(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            page = int(query.get("page", "1"))
            size = int(query.get("size", "10"))
        except ValueError:
            return _invalid("page", "page and size must be integers.")
        if page < 1:
            return _invalid("page", "The page must be at least 1.")
        if not 1 <= size <= 200:
            return _invalid("size", "The size must be between 1 and 200.")
        items = [self._refresh(inv) for inv in self.invoices.values()]
        if "track_id" in query:
            items = [inv for inv in items if inv.track_id == query["track_id"]]
        if "type" in query and query["type"].lower() != "invoice":
            items = []
        if "status" in query:
            items = [inv for inv in items if inv.status == query["status"].strip().lower()]
        if "currency" in query:
            items = [inv for inv in items if inv.currency == query["currency"].upper()]
        if self.order_id_filter and "order_id" in query:
            items = [inv for inv in items if inv.order_id == query["order_id"]]
        for name in ("from_date", "to_date"):
            if name in query:
                try:
                    bound = int(query[name])
                except ValueError:
                    return _invalid(name, f"The {name} must be a unix timestamp.")
                if name == "from_date":
                    items = [inv for inv in items if inv.date >= bound]
                else:
                    items = [inv for inv in items if inv.date <= bound]
        for name in ("from_amount", "to_amount"):
            if name in query:
                bound_amount = _to_decimal(query[name])
                if bound_amount is None:
                    return _invalid(name, f"The {name} must be a number.")
                if name == "from_amount":
                    items = [inv for inv in items if inv.amount >= bound_amount]
                else:
                    items = [inv for inv in items if inv.amount <= bound_amount]
        sort_by = query.get("sort_by", "create_date")
        keys: dict[str, Callable[[FakeInvoice], Any]] = {
            "create_date": lambda inv: (inv.date, inv.track_id),
            "pay_date": lambda inv: (inv.pay_date or 0, inv.track_id),
            "amount": lambda inv: (inv.amount, inv.track_id),
        }
        if sort_by not in keys:
            return _invalid("sort_by", "sort_by must be create_date, pay_date or amount.")
        items.sort(key=keys[sort_by], reverse=query.get("sort_type", "desc") != "asc")
        total = len(items)
        last_page = max(1, -(-total // size))
        chunk = items[(page - 1) * size : page * size]
        return _envelope(
            200,
            "Operation completed successfully!",
            data={
                "list": [self._payment_json(inv) for inv in chunk],
                "meta": {"page": page, "last_page": last_page, "total": total},
            },
        )

    async def _pay_page(self, request: web.Request) -> web.Response:
        inv = self.invoices.get(request.match_info["track_id"])
        if inv is None:
            return web.Response(status=404, text="invoice not found")
        self._refresh(inv)
        esc = html.escape
        button = (
            f'<form method="post"><button type="submit">Pay {esc(str(inv.amount))} '
            f"{esc(inv.currency)} (simulated)</button></form>"
            if inv.status in ("new", "waiting", "paying")
            else ""
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Fake OxaPay invoice {esc(inv.track_id)}</title></head><body>"
            f"<h1>Fake OxaPay</h1><p>Invoice <b>{esc(inv.track_id)}</b></p>"
            f"<p>Amount: {esc(str(inv.amount))} {esc(inv.currency)}</p>"
            f"<p>Status: {esc(inv.status)}</p><p>{esc(inv.description)}</p>{button}"
            "</body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _pay_submit(self, request: web.Request) -> web.Response:
        track_id = request.match_info["track_id"]
        inv = self.invoices.get(track_id)
        if inv is None:
            return web.Response(status=404, text="invoice not found")
        if self._refresh(inv).status in ("new", "waiting", "paying"):
            await self.mark_paid(track_id)
        raise web.HTTPSeeOther(location=inv.return_url or f"/pay/{track_id}")

    # ----------------------------------------------------------------- control (HTTP)

    def _control_routes(
        self,
    ) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]]:
        """HTTP control API (no auth; the fake listens on 127.0.0.1 only):

        GET    /_control/calls                      -> {"counts": {...}, "calls": [...]}
        POST   /_control/reset
        POST   /_control/failures   {"operation", "kind", "times"?, "delay"?, "retry_after"?}
        DELETE /_control/failures
        POST   /_control/callback_options {CallbackOptions fields}   (defaults)
        POST   /_control/invoices/{track_id}/{paying|paid|underpaid|expired|resend}
               {"paid_amount"?, "pay_currency"?, + CallbackOptions overrides}
        GET    /_control/invoices
        GET    /_control/callbacks                  -> delivery log
        POST   /_control/latency    {"instant": bool, "latency_seconds"?: float}
        """
        return [
            ("GET", "/_control/calls", self._c_calls),
            ("POST", "/_control/reset", self._c_reset),
            ("POST", "/_control/failures", self._c_failures),
            ("DELETE", "/_control/failures", self._c_clear_failures),
            ("POST", "/_control/callback_options", self._c_callback_options),
            ("POST", "/_control/invoices/{track_id}/{action}", self._c_invoice_action),
            ("GET", "/_control/invoices", self._c_invoices),
            ("GET", "/_control/callbacks", self._c_callbacks),
            ("POST", "/_control/latency", self._c_latency),
        ]

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = json.loads(await request.read(), parse_float=Decimal)
        except ValueError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.Response(text=_dumps(data), content_type="application/json")

    @staticmethod
    def _delivery_json(delivery: CallbackDelivery) -> dict[str, Any]:
        return {
            "track_id": delivery.track_id,
            "status": delivery.status,
            "copy": delivery.copy,
            "attempt": delivery.attempt,
            "signature": delivery.signature,
            "http_status": delivery.http_status,
            "response_text": delivery.response_text,
            "error": delivery.error,
        }

    async def _c_calls(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "counts": self.call_counts(),
                "calls": [
                    {
                        "operation": c.operation,
                        "method": c.method,
                        "path": c.path,
                        "authorized": c.authorized,
                        "status": c.status,
                    }
                    for c in self.calls
                ],
            }
        )

    async def _c_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return self._json({"ok": True})

    async def _c_failures(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        retry_after = body.get("retry_after", 1)
        try:
            self.inject_failure(
                str(body.get("operation", "*")),
                str(body.get("kind", "")),
                int(body.get("times", 1)),
                delay=float(body.get("delay", 2.0)),
                retry_after=None if retry_after is None else int(retry_after),
            )
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return self._json({"ok": True})

    async def _c_clear_failures(self, request: web.Request) -> web.Response:
        self.clear_failures()
        return self._json({"ok": True})

    @staticmethod
    def _option_overrides(body: Mapping[str, Any]) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(CallbackOptions)}
        overrides = {k: v for k, v in body.items() if k in names}
        if "retry_delays" in overrides:
            overrides["retry_delays"] = tuple(float(d) for d in overrides["retry_delays"])
        if "duplicates" in overrides:
            overrides["duplicates"] = int(overrides["duplicates"])
        return overrides

    async def _c_callback_options(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            options = self.set_callback_options(**self._option_overrides(body))
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return self._json(dataclasses.asdict(options))

    async def _c_invoice_action(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        track_id = request.match_info["track_id"]
        action = request.match_info["action"]
        if track_id not in self.invoices:
            raise web.HTTPNotFound(text="no such invoice")
        try:
            overrides = self._option_overrides(body)
            pay_currency = body.get("pay_currency")
            if action == "paying":
                deliveries = await self.mark_paying(
                    track_id, pay_currency=pay_currency, **overrides
                )
            elif action == "paid":
                deliveries = await self.mark_paid(
                    track_id, body.get("paid_amount"), pay_currency=pay_currency, **overrides
                )
            elif action == "underpaid":
                if body.get("paid_amount") is None:
                    raise ValueError("paid_amount is required")
                deliveries = await self.mark_underpaid(
                    track_id, body["paid_amount"], pay_currency=pay_currency, **overrides
                )
            elif action == "expired":
                deliveries = await self.mark_expired(track_id, **overrides)
            elif action == "resend":
                deliveries = await self.resend_callback(track_id, **overrides)
            else:
                raise web.HTTPNotFound(text="unknown action")
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return self._json(
            {
                "status": self.invoices[track_id].status,
                "deliveries": [self._delivery_json(d) for d in deliveries],
            }
        )

    async def _c_invoices(self, request: web.Request) -> web.Response:
        return self._json(
            {"invoices": [self._payment_json(inv) for inv in self.invoices.values()]}
        )

    async def _c_callbacks(self, request: web.Request) -> web.Response:
        return self._json({"deliveries": [self._delivery_json(d) for d in self.deliveries]})

    async def _c_latency(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.set_instant(bool(body.get("instant", True)))
        if "latency_seconds" in body:
            self.latency_seconds = float(body["latency_seconds"])
        return self._json({"instant": self.instant, "latency_seconds": self.latency_seconds})
