"""The fake OxaPay on its own: wire format, validation, control API and callbacks
delivered to a small aiohttp receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from providers.payments.oxapay import parse_callback, verify_callback_signature
from sandbox.oxapay import FakeOxaPay, sign

KEY = "fake-merchant-key-for-tests"


@dataclass
class Receiver:
    """Collects webhook deliveries; answers `reply_status` with body `reply_text`."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    reply_status: int = 200
    reply_text: str = "ok"
    in_flight: int = 0
    max_in_flight: int = 0
    hold: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
            self.received.append((dict(request.headers), await request.read()))
        finally:
            self.in_flight -= 1
        return web.Response(status=self.reply_status, text=self.reply_text)

    def statuses(self) -> list[str]:
        return [json.loads(body)["status"] for _, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/callbacks/oxapay", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/callbacks/oxapay"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOxaPay]:
    server = FakeOxaPay(merchant_api_key=KEY, instant=True)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    key: str | None = KEY,
    body: Any = None,
    params: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"merchant_api_key": key} if key is not None else {}
    async with http.request(method, url, json=body, headers=headers, params=params) as response:
        return response.status, await response.json(content_type=None)


async def new_invoice(
    http: aiohttp.ClientSession, fake: FakeOxaPay, callback_url: str = "", **extra: Any
) -> str:
    body = {"amount": 12.5, "currency": "USD", "lifetime": 30, "order_id": "o-1", **extra}
    if callback_url:
        body["callback_url"] = callback_url
    status, data = await call(http, "POST", f"{fake.base_url}/v1/payment/invoice", body=body)
    assert status == 200, data
    return str(data["data"]["track_id"])


async def test_create_invoice_envelope(fake: FakeOxaPay, http: aiohttp.ClientSession) -> None:
    status, data = await call(
        http,
        "POST",
        f"{fake.base_url}/v1/payment/invoice",
        body={"amount": 10, "lifetime": 15, "order_id": "o-9", "sandbox": True},
    )
    assert status == 200
    assert set(data) == {"data", "message", "error", "status", "version"}
    assert data["status"] == 200 and data["error"] == {} and data["version"] == "1.0.0"
    invoice = data["data"]
    assert invoice["expired_at"] - invoice["date"] == 15 * 60
    async with http.get(invoice["payment_url"]) as page:
        assert page.status == 200
        assert invoice["track_id"] in await page.text()


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"amount": 1, "lifetime": 14}, "lifetime"),
        ({"amount": 1, "lifetime": 2881}, "lifetime"),
        ({"amount": 1, "lifetime": "60"}, "lifetime"),
        ({"lifetime": 60}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": 1, "under_paid_coverage": 61}, "under_paid_coverage"),
        ({"amount": 1, "fee_paid_by_payer": 2}, "fee_paid_by_payer"),
        ({"amount": 1, "callback_url": "ftp://x"}, "callback_url"),
    ],
)
async def test_create_invoice_validation(
    fake: FakeOxaPay, http: aiohttp.ClientSession, body: dict[str, Any], key: str
) -> None:
    status, data = await call(http, "POST", f"{fake.base_url}/v1/payment/invoice", body=body)
    assert status == 400 and data["status"] == 400
    assert data["error"]["key"] == key
    assert data["error"]["type"] and data["error"]["message"]


async def test_bad_key_is_401_envelope(fake: FakeOxaPay, http: aiohttp.ClientSession) -> None:
    for key in ("wrong", None):
        status, data = await call(http, "GET", f"{fake.base_url}/v1/payment", key=key)
        assert status == 401 and data["status"] == 401
        assert data["error"]["key"] == "merchant_api_key"
    assert [c.authorized for c in fake.calls] == [False, False]


async def test_payment_info_and_expiry(fake: FakeOxaPay, http: aiohttp.ClientSession) -> None:
    now = [1_700_000_000.0]
    fake._clock = lambda: now[0]
    track_id = await new_invoice(http, fake)
    status, data = await call(http, "GET", f"{fake.base_url}/v1/payment/{track_id}")
    assert status == 200
    info = data["data"]
    assert info["status"] == "New" and info["amount"] == 12.5 and info["order_id"] == "o-1"
    assert info["txs"] == []
    now[0] += 31 * 60
    _, data = await call(http, "GET", f"{fake.base_url}/v1/payment/{track_id}")
    assert data["data"]["status"] == "Expired"
    status, data = await call(http, "GET", f"{fake.base_url}/v1/payment/999")
    assert status == 404


async def test_history_filters_and_paging(fake: FakeOxaPay, http: aiohttp.ClientSession) -> None:
    ids = [await new_invoice(http, fake, order_id=f"o-{n}") for n in range(5)]
    await fake.mark_paid(ids[0], deliver=False)
    url = f"{fake.base_url}/v1/payment"
    _, data = await call(http, "GET", url, params={"size": "2", "page": "3"})
    assert data["data"]["meta"] == {"page": 3, "last_page": 3, "total": 5}
    assert len(data["data"]["list"]) == 1
    _, data = await call(http, "GET", url, params={"status": "Paid"})
    assert [p["track_id"] for p in data["data"]["list"]] == [ids[0]]
    # order_id is not a documented filter: ignored unless the fake is told otherwise
    _, data = await call(http, "GET", url, params={"order_id": "o-3", "size": "200"})
    assert len(data["data"]["list"]) == 5
    fake.order_id_filter = True
    _, data = await call(http, "GET", url, params={"order_id": "o-3"})
    assert [p["order_id"] for p in data["data"]["list"]] == ["o-3"]
    status, data = await call(http, "GET", url, params={"size": "201"})
    assert status == 400 and data["error"]["key"] == "size"


async def test_callbacks_signed_in_order(
    fake: FakeOxaPay, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    track_id = await new_invoice(http, fake, receiver.url)
    deliveries = await fake.mark_paid(track_id)
    assert [d.status for d in deliveries] == ["Paying", "Paid"]
    assert all(d.acknowledged for d in deliveries)
    assert receiver.statuses() == ["Paying", "Paid"]
    for headers, body in receiver.received:
        assert headers["Content-Type"] == "application/json"
        assert hmac.compare_digest(
            headers["HMAC"], hmac.new(KEY.encode(), body, hashlib.sha512).hexdigest()
        )
        assert verify_callback_signature(body, headers["HMAC"], KEY)
    paid = parse_callback(receiver.received[-1][1])
    assert paid.track_id == track_id and paid.status == "paid"
    assert paid.amount_cents == 1250 and paid.paid_amount_cents == 1250


async def test_callback_options(
    fake: FakeOxaPay, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    track_id = await new_invoice(http, fake, receiver.url)
    await fake.mark_paid(track_id, out_of_order=True, capitalized_status=False)
    assert receiver.statuses() == ["paid", "paying"]

    receiver.received.clear()
    await fake.resend_callback(track_id, duplicates=3)
    assert receiver.statuses() == ["Paid"] * 3
    assert receiver.max_in_flight == 1  # sequential

    receiver.received.clear()
    receiver.hold = 0.05
    await fake.resend_callback(track_id, duplicates=4, concurrent=True)
    assert len(receiver.received) == 4 and receiver.max_in_flight == 4
    receiver.hold = 0.0

    receiver.received.clear()
    await fake.resend_callback(track_id, signature="bad")
    headers, body = receiver.received[-1]
    assert not verify_callback_signature(body, headers["HMAC"], KEY)
    await fake.resend_callback(track_id, signature="missing")
    headers, body = receiver.received[-1]
    assert "HMAC" not in headers and not verify_callback_signature(body, None, KEY)

    receiver.received.clear()
    assert await fake.resend_callback(track_id, deliver=False) == []
    assert receiver.received == []


async def test_underpaid_expired_and_redelivery(
    fake: FakeOxaPay, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    track_id = await new_invoice(http, fake, receiver.url)
    await fake.mark_paying(track_id)
    await fake.mark_underpaid(track_id, "10.00")
    assert receiver.statuses() == ["Paying", "Underpaid"]
    assert parse_callback(receiver.received[-1][1]).paid_amount_cents == 1000

    other = await new_invoice(http, fake, receiver.url)
    receiver.reply_status = 500
    deliveries = await fake.mark_expired(other, retry_delays=(0.01, 0.01))
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert not any(d.acknowledged for d in deliveries)
    receiver.reply_status = 200
    deliveries = await fake.resend_callback(other, retry_delays=(0.01,))
    assert [d.attempt for d in deliveries] == [1]  # acknowledged with "ok": no retry


async def test_failure_injection(fake: FakeOxaPay, http: aiohttp.ClientSession) -> None:
    url = f"{fake.base_url}/v1/payment"
    fake.inject_failure("list_payments", "rate_limit", retry_after=9)
    async with http.get(url, headers={"merchant_api_key": KEY}) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "9"
    fake.inject_failure("list_payments", "error_503", times=2)
    for _ in range(2):
        status, data = await call(http, "GET", url)
        assert status == 503 and data["status"] == 503
    status, _ = await call(http, "GET", url)
    assert status == 200

    fake.inject_failure("create_invoice", "timeout_after_create", delay=0.3)
    body = {"amount": 1, "order_id": "late"}
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            f"{fake.base_url}/v1/payment/invoice",
            json=body,
            headers={"merchant_api_key": KEY},
            timeout=aiohttp.ClientTimeout(total=0.1),
        ):
            pass
    assert len(fake.invoices_for_order("late")) == 1  # created although the caller timed out
    assert fake.call_counts() == {"list_payments": 4, "create_invoice": 1}
    with pytest.raises(ValueError):
        fake.inject_failure("create_invoice", "explode")


async def test_http_control_api(
    fake: FakeOxaPay, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    base = f"{fake.base_url}/_control"
    track_id = await new_invoice(http, fake, receiver.url)
    async with http.post(f"{base}/callback_options", json={"capitalized_status": True}) as r:
        assert (await r.json())["capitalized_status"] is True
    async with http.post(
        f"{base}/invoices/{track_id}/paid", json={"paid_amount": "12.00", "duplicates": 2}
    ) as r:
        result = await r.json()
    assert result["status"] == "paid"
    assert [d["status"] for d in result["deliveries"]] == ["Paying", "Paying", "Paid", "Paid"]
    assert fake.invoice(track_id).paid_amount == Decimal("12.00")
    async with http.get(f"{base}/callbacks") as r:
        assert len((await r.json())["deliveries"]) == 4
    async with http.post(f"{base}/failures", json={"operation": "get_payment", "kind": "500"}):
        pass
    status, _ = await call(http, "GET", f"{fake.base_url}/v1/payment/{track_id}")
    assert status == 500
    async with http.get(f"{base}/calls") as r:
        calls = await r.json()
    assert calls["counts"] == {"create_invoice": 1, "get_payment": 1}
    async with http.get(f"{base}/invoices") as r:
        assert [i["track_id"] for i in (await r.json())["invoices"]] == [track_id]
    async with http.post(f"{base}/invoices/{track_id}/bogus") as r:
        assert r.status == 404
    async with http.post(f"{base}/latency", json={"instant": False, "latency_seconds": 0}) as r:
        assert (await r.json()) == {"instant": False, "latency_seconds": 0}
    async with http.post(f"{base}/reset") as r:
        assert r.status == 200
    assert fake.invoices == {} and fake.calls == []


async def test_payment_page_button_pays(
    fake: FakeOxaPay, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    track_id = await new_invoice(http, fake, receiver.url)
    async with http.post(f"{fake.base_url}/pay/{track_id}", allow_redirects=False) as r:
        assert r.status == 303
    assert fake.invoice(track_id).status == "paid"
    assert receiver.statuses() == ["Paying", "Paid"]


def test_sign_matches_hmac_sha512() -> None:
    body = b'{"a":1}'
    assert sign(body, "k") == hmac.new(b"k", body, hashlib.sha512).hexdigest()


TX_FIELDS = {
    "status",
    "tx_hash",
    "sent_amount",
    "received_amount",
    "value",
    "sent_value",
    "currency",
    "network",
    "sender_address",
    "address",
    "rate",
    "confirmations",
    "auto_convert_amount",
    "auto_convert_currency",
    "date",
}


async def test_a_usd_invoice_is_paid_in_a_coin(
    fake: FakeOxaPay, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Live shape: the invoice stays in USD, each transaction is in the payer's coin with
    the converted `value`, statuses are capitalised (callbacks and payment information)."""
    track_id = await new_invoice(http, fake, receiver.url)
    await fake.mark_paid(track_id)
    assert receiver.statuses() == ["Paying", "Paid"]
    body = json.loads(receiver.received[-1][1], parse_float=Decimal)
    assert body["amount"] == Decimal("12.5") and body["currency"] == "USD"
    [tx] = body["txs"]
    assert set(tx) >= TX_FIELDS
    assert tx["currency"] == "USDT" and tx["network"]
    assert tx["value"] == Decimal("12.5") and tx["sent_value"] == Decimal("12.5")
    assert tx["received_amount"] != tx["value"]  # coin units, not dollars
    assert tx["received_amount"] * tx["rate"] == pytest.approx(tx["value"], abs=Decimal("0.01"))

    status, data = await call(http, "GET", f"{fake.base_url}/v1/payment/{track_id}")
    assert status == 200
    info = data["data"]
    assert info["status"] == "Paid" and info["currency"] == "USD"
    [tx] = info["txs"]
    assert set(tx) >= TX_FIELDS | {"amount"}
    assert tx["currency"] == "USDT" and tx["amount"] == tx["received_amount"]

    other = await new_invoice(http, fake, receiver.url, order_id="o-2")
    await fake.mark_underpaid(other, "10.00", pay_currency="TRX")
    body = json.loads(receiver.received[-1][1], parse_float=Decimal)
    assert body["status"] == "Underpaid"
    [tx] = body["txs"]
    assert tx["currency"] == "TRX" and tx["value"] == Decimal("10.00")
    assert tx["received_amount"] > 10  # a TRX is worth well under a dollar
    _, data = await call(http, "GET", f"{fake.base_url}/v1/payment/{other}")
    assert data["data"]["status"] == "Underpaid"
    with pytest.raises(ValueError):
        await fake.mark_paid(other, pay_currency="NOPE")
