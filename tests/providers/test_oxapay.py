"""OxaPayClient against the fake OxaPay over real HTTP, plus the webhook helpers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from pydantic import SecretStr

from providers.errors import (
    InvalidCallback,
    ProviderAuthError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.payments.oxapay import (
    OxaPayClient,
    parse_callback,
    signature_from_headers,
    verify_callback_signature,
)
from sandbox.oxapay import FakeInvoice, FakeOxaPay
from tests.providers.conftest import MERCHANT_KEY, SleepRecorder


async def create(oxa: OxaPayClient, order_id: str = "topup-1", cents: int = 1234) -> str:
    invoice = await oxa.create_invoice(
        cents, "USD", order_id, 60, "https://bot.example/callbacks/oxapay", "Balance top-up"
    )
    return invoice.track_id


async def test_create_invoice(oxa: OxaPayClient, fake_oxa: FakeOxaPay) -> None:
    invoice = await oxa.create_invoice(
        1234,
        "usd",
        "topup-1",
        30,
        "https://bot.example/callbacks/oxapay",
        "Balance top-up",
        return_url="https://t.me/shiplabel_bot",
    )
    assert invoice.payment_url == f"{fake_oxa.base_url}/pay/{invoice.track_id}"
    assert invoice.amount_cents == 1234 and invoice.currency == "USD"
    assert invoice.expires_at and invoice.created_at
    assert (invoice.expires_at - invoice.created_at).total_seconds() == 30 * 60
    assert not invoice.recovered
    stored = fake_oxa.invoice(invoice.track_id)
    assert stored.amount == Decimal("12.34")  # sent as an exact JSON number
    assert stored.sandbox is True
    assert stored.order_id == "topup-1"


async def test_timeout_after_create_recovers_the_existing_invoice(
    make_oxa: Callable[..., OxaPayClient], fake_oxa: FakeOxaPay
) -> None:
    oxa = make_oxa(timeout_total=0.2)
    for n in range(3):  # other invoices around it
        await create(oxa, order_id=f"other-{n}")
    fake_oxa.inject_failure("create_invoice", "timeout_after_create", delay=0.5)
    invoice = await oxa.create_invoice(
        2500, "USD", "topup-77", 60, "https://bot.example/cb", "Top-up"
    )
    assert invoice.recovered
    assert invoice.payment_url is None  # payment information carries no URL
    assert invoice.amount_cents == 2500
    assert [inv.track_id for inv in fake_oxa.invoices_for_order("topup-77")] == [invoice.track_id]
    assert fake_oxa.call_count("create_invoice") == 4  # 3 others + exactly one for topup-77
    assert fake_oxa.call_count("list_payments") >= 1


async def test_500_without_invoice_is_looked_up_then_retried(
    oxa: OxaPayClient, fake_oxa: FakeOxaPay, sleeps: SleepRecorder
) -> None:
    fake_oxa.inject_failure("create_invoice", "error_500")
    invoice = await oxa.create_invoice(500, "USD", "topup-5", 60, "https://bot.example/cb", "d")
    assert not invoice.recovered and invoice.payment_url
    assert fake_oxa.call_count("create_invoice") == 2
    assert fake_oxa.call_count("list_payments") == 1
    assert len(fake_oxa.invoices_for_order("topup-5")) == 1
    assert len(sleeps.delays) == 1


async def test_429_on_create_is_retried_without_lookup(
    oxa: OxaPayClient, fake_oxa: FakeOxaPay, sleeps: SleepRecorder
) -> None:
    fake_oxa.inject_failure("create_invoice", "rate_limit", retry_after=3)
    await create(oxa, "topup-429")
    assert fake_oxa.call_count("create_invoice") == 2
    assert fake_oxa.call_count("list_payments") == 0
    assert sleeps.delays == [3.0]


async def test_failed_lookup_never_creates_a_second_invoice(
    make_oxa: Callable[..., OxaPayClient], fake_oxa: FakeOxaPay
) -> None:
    oxa = make_oxa(timeout_total=0.2)
    fake_oxa.inject_failure("create_invoice", "timeout_after_create", delay=0.5)
    fake_oxa.inject_failure("list_payments", "error_503", times=10)
    with pytest.raises(ProviderUnavailable) as excinfo:
        await create(oxa, "topup-dark")
    assert excinfo.value.outcome_unknown and not excinfo.value.retryable
    assert fake_oxa.call_count("create_invoice") == 1
    assert len(fake_oxa.invoices_for_order("topup-dark")) == 1


async def test_recovered_invoice_with_other_amount_is_a_conflict(
    make_oxa: Callable[..., OxaPayClient], fake_oxa: FakeOxaPay
) -> None:
    oxa = make_oxa(timeout_total=0.2)
    await create(oxa, "topup-dup", cents=1000)
    fake_oxa.inject_failure("create_invoice", "error_500")
    with pytest.raises(ProviderRejected) as excinfo:
        await create(oxa, "topup-dup", cents=2000)
    assert excinfo.value.code == "order_id_conflict"


async def test_get_payment_lowercases_and_sums_paid_amount(
    oxa: OxaPayClient, fake_oxa: FakeOxaPay
) -> None:
    track_id = await create(oxa, "topup-pay", cents=1000)
    info = await oxa.get_payment(track_id)
    assert info.status == "new" and info.paid_amount_cents is None
    await fake_oxa.mark_paid(track_id, Decimal("9.99"), deliver=False)
    info = await oxa.get_payment(track_id)
    assert info.status == "paid"  # "Paid" on the wire
    assert info.amount_cents == 1000
    assert info.paid_amount_cents == 999
    assert info.order_id == "topup-pay"
    assert info.txs and info.txs[0].status == "confirmed"


@pytest.mark.parametrize("coin", ["USDT", "TRX", "BTC"])
async def test_paid_amount_of_a_coin_payment_is_its_converted_value(
    oxa: OxaPayClient, fake_oxa: FakeOxaPay, coin: str
) -> None:
    """A USD invoice paid in a coin: the paid amount is the transactions' `value` (USD),
    not their coin amount, and not unknown."""
    track_id = await create(oxa, f"topup-{coin}", cents=2500)
    await fake_oxa.mark_underpaid(track_id, "20.00", pay_currency=coin, deliver=False)
    info = await oxa.get_payment(track_id)
    assert info.status == "underpaid"
    assert info.currency == "USD" and info.amount_cents == 2500
    assert info.paid_amount_cents == 2000
    [tx] = info.txs
    assert tx.currency == coin and tx.value == Decimal("20.00")
    assert tx.amount is not None and tx.amount != Decimal("20.00")  # in the coin


async def test_get_payment_is_retried(
    oxa: OxaPayClient, fake_oxa: FakeOxaPay, sleeps: SleepRecorder
) -> None:
    track_id = await create(oxa)
    fake_oxa.inject_failure("get_payment", "error_503", times=2)
    assert (await oxa.get_payment(track_id)).track_id == track_id
    assert fake_oxa.call_count("get_payment") == 3


async def test_get_payment_unknown(oxa: OxaPayClient) -> None:
    with pytest.raises(ProviderNotFound):
        await oxa.get_payment("123456789")


async def test_find_by_order_id_pages_without_a_server_filter(
    oxa: OxaPayClient, fake_oxa: FakeOxaPay
) -> None:
    target = await create(oxa, "needle", cents=700)
    fake_oxa.invoice(target).date -= 10  # older than all of the filler below
    now = int(time.time())
    for n in range(250):
        track_id = str(200_000_000 + n)
        fake_oxa.invoices[track_id] = FakeInvoice(
            track_id=track_id,
            amount=Decimal("5"),
            currency="USD",
            lifetime=60,
            order_id=f"hay-{n}",
            callback_url="",
            return_url="",
            description="",
            email="",
            thanks_message="",
            fee_paid_by_payer=0,
            under_paid_coverage=Decimal(0),
            mixed_payment=False,
            sandbox=True,
            date=now,
            expired_at=now + 3600,
        )
    found = await oxa.find_payment_by_order_id("needle")
    assert found is not None and found.track_id == target
    assert fake_oxa.call_count("list_payments") == 2  # page 1 (200) then page 2
    assert await oxa.find_payment_by_order_id("missing") is None


async def test_wrong_key_and_secretstr(
    make_oxa: Callable[..., OxaPayClient], fake_oxa: FakeOxaPay
) -> None:
    bad = make_oxa(merchant_api_key=SecretStr("definitely-wrong-merchant-key"))
    with pytest.raises(ProviderAuthError) as excinfo:
        await bad.get_payment("123")
    assert "definitely-wrong" not in str(excinfo.value) + repr(excinfo.value)
    good = make_oxa(merchant_api_key=SecretStr(MERCHANT_KEY))
    assert await create(good, "secret-ok")


async def test_validation_error_is_rejected_with_field(oxa: OxaPayClient) -> None:
    with pytest.raises(ProviderRejected) as excinfo:
        await oxa.create_invoice(100, "USD", "bad-lifetime", 5, "https://x.example/cb", "d")
    assert excinfo.value.field == "lifetime"
    assert excinfo.value.status == 400


# --------------------------------------------------------------------------- webhook helpers


def signed(body: bytes, key: str = MERCHANT_KEY) -> str:
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def test_verify_signature_true_false_missing_case() -> None:
    body = b'{"track_id":"1","status":"Paid"}'
    good = signed(body)
    assert verify_callback_signature(body, good, MERCHANT_KEY)
    assert verify_callback_signature(body, good.upper(), MERCHANT_KEY)
    assert verify_callback_signature(body, f"  {good}\n", MERCHANT_KEY)
    assert not verify_callback_signature(body + b" ", good, MERCHANT_KEY)
    assert not verify_callback_signature(body, signed(body, "other-key"), MERCHANT_KEY)
    assert not verify_callback_signature(body, None, MERCHANT_KEY)
    assert not verify_callback_signature(body, "", MERCHANT_KEY)
    assert not verify_callback_signature(body, "zz" * 64, MERCHANT_KEY)
    assert not verify_callback_signature(body, "é" * 128, MERCHANT_KEY)
    assert not verify_callback_signature(body, good[:-2], MERCHANT_KEY)
    assert not verify_callback_signature(body, good, "")


def test_signature_header_lookup_is_case_insensitive() -> None:
    assert signature_from_headers({"hmac": "abc"}) == "abc"
    assert signature_from_headers({"Hmac": "abc"}) == "abc"
    assert signature_from_headers({"X-Other": "abc"}) is None


def test_parse_callback() -> None:
    body = json.dumps(
        {
            "track_id": 151811887,
            "status": "Paid",
            "type": "invoice",
            "amount": 10.1,
            "value": 10.1,
            "currency": "usdt",
            "order_id": "topup-9",
            "date": 1736501470,
            "txs": [
                {
                    "status": "confirmed",
                    "tx_hash": "0xabc",
                    "received_amount": 10.1,
                    "currency": "USDT",
                    "network": "Tron Network",
                    "confirmations": 19,
                }
            ],
        }
    ).encode()
    callback = parse_callback(body)
    assert callback.track_id == "151811887"
    assert callback.status == "paid"
    assert callback.amount == Decimal("10.1") and callback.amount_cents == 1010
    assert callback.paid_amount_cents == 1010
    assert callback.currency == "USDT"
    assert callback.date is not None and callback.date.tzinfo is not None


def _coin_callback(txs: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {
            "track_id": "151811888",
            "status": "Underpaid",
            "type": "invoice",
            "amount": "25",
            "value": "20",
            "currency": "USD",
            "order_id": "topup-10",
            "date": 1736501470,
            "txs": txs,
        }
    ).encode()


def test_parse_callback_values_coin_transactions_in_the_invoice_currency() -> None:
    trx = {
        "status": "confirmed",
        "tx_hash": "0xdef",
        "sent_amount": "49.387755",
        "received_amount": "49.387755",
        "value": "12.10",
        "sent_value": "12.10",
        "currency": "TRX",
        "network": "Tron Network",
        "rate": "0.2450",
        "confirmations": 20,
    }
    usdt = {**trx, "received_amount": "7.902371", "value": "7.90", "currency": "USDT"}
    callback = parse_callback(_coin_callback([trx, usdt]))
    assert callback.status == "underpaid"
    assert callback.currency == "USD" and callback.amount_cents == 2500
    assert callback.paid_amount_cents == 2000  # 12.10 + 7.90, the converted values
    assert [tx.currency for tx in callback.txs] == ["TRX", "USDT"]
    assert callback.txs[0].amount == Decimal("49.387755")
    # A coin transaction without a converted value: the received amount is unknown.
    no_value = {k: v for k, v in trx.items() if k not in ("value", "sent_value")}
    assert parse_callback(_coin_callback([no_value])).paid_amount_cents is None
    # A transaction in the invoice currency itself needs no conversion.
    usd = {k: v for k, v in no_value.items()} | {"currency": "USD", "received_amount": "20"}
    assert parse_callback(_coin_callback([usd])).paid_amount_cents == 2000


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"status": "paid", "amount": 1, "currency": "USD"}',
        b'{"track_id": "1", "amount": 1, "currency": "USD"}',
        b'{"track_id": "1", "status": "paid", "currency": "USD"}',
        b'{"track_id": "1", "status": "paid", "amount": "abc", "currency": "USD"}',
        b'{"track_id": "1", "status": "paid", "amount": 1}',
        b'{"track_id": "1", "status": "paid", "amount": 1, "currency": "USD", "txs": 5}',
        b"\xff\xfe",
    ],
)
def test_parse_callback_malformed(body: bytes) -> None:
    with pytest.raises(InvalidCallback):
        parse_callback(body)
