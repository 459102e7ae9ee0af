"""Top-ups end to end: the bot, the fake OxaPay (with signed callbacks to our endpoint)
and Telegram Stars through the emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import Secrets
from handlers.oxapay_callback import make_oxapay_callback
from sandbox.oxapay import FakeOxaPay
from storage.client import Mongo
from tests.conftest import OWNER_ID, FakeClock, make_settings

KEY = "test-merchant-key-0123456789"
CUSTOMER = 4242


@dataclass
class PayEnv:
    harness: BotHarness
    oxapay: FakeOxaPay
    callback_url: str
    mongo: Mongo

    async def ledger(self, user_id: int = CUSTOMER) -> list[dict[str, object]]:
        return await self.mongo.db["ledger"].find({"user_id": user_id}).to_list(None)

    async def balance(self, user_id: int = CUSTOMER) -> int:
        user = await self.mongo.db["users"].find_one({"_id": user_id})
        return int(user["balance_cents"]) if user else 0

    async def payment(self) -> dict[str, object]:
        doc = await self.mongo.db["payments"].find_one({"user_id": CUSTOMER})
        assert doc is not None
        return dict(doc)

    async def start_crypto_topup(self, amount: str = "25") -> str:
        h = self.harness
        [ask] = await h.say(CUSTOMER, "/topup")
        assert "step 1 of 2" in ask.content
        [method] = await h.say(CUSTOMER, amount)
        replies = await h.press(CUSTOMER, method, "Crypto")
        invoice = h.emulator.message(CUSTOMER, method.message_id)
        assert "Invoice for $25.00" in invoice.content, [m.content for m in replies]
        assert any(t.startswith("💳 Pay") for t, _ in invoice.buttons)
        payment = await self.payment()
        assert payment["status"] == "pending"
        return str(payment["provider_ref"])

    async def audit_ok(self) -> None:
        services = self.harness.application.bot_data.require_storage()
        _, mismatches = await services.ledger.audit()
        assert mismatches == []


@pytest.fixture
async def env(mongo: Mongo, clock: FakeClock) -> AsyncIterator[PayEnv]:
    oxapay = FakeOxaPay(merchant_api_key=KEY, instant=True)
    await oxapay.start()
    holder: dict[str, BotHarness] = {}
    app = web.Application()
    handler = make_oxapay_callback(
        lambda: holder["h"].application.bot_data.require_services().payments,
        lambda: KEY,
        max_bytes=65536,
    )
    app.router.add_post("/callbacks/oxapay", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    callback_url = f"http://127.0.0.1:{port}/callbacks/oxapay"
    base = make_settings()
    payments = base.payments.model_copy(
        update={
            "oxapay": base.payments.oxapay.model_copy(
                update={"base_url": oxapay.base_url, "callback_url": callback_url, "sandbox": True}
            )
        }
    )
    secrets = Secrets.model_construct(
        telegram_bot_token=None, mongo_url=None, oxapay_merchant_api_key=SecretStr(KEY)
    )
    settings = make_settings(payments=payments, secrets=secrets)
    harness = BotHarness(settings, mongo=mongo, clock=clock, rate_limits=False)
    holder["h"] = harness
    await harness.start()
    harness.add_user(CUSTOMER, first_name="Payer")
    harness.add_user(OWNER_ID)
    await harness.say(CUSTOMER, "/start")
    try:
        yield PayEnv(harness, oxapay, callback_url, mongo)
    finally:
        await harness.close()
        await runner.cleanup()
        await oxapay.stop()


async def test_amount_validation_messages(env: PayEnv) -> None:
    h = env.harness
    await h.say(CUSTOMER, "/topup")
    for text, expected in [
        ("abc", "not an amount"),
        ("-5", "must be positive"),
        ("1e9", "not an amount"),
        ("10,50", "Use a dot"),
        ("5", "minimum top-up is $10.00"),
        ("5000", "maximum top-up is $1,000.00"),
        ("10.555", "at most 2 decimal"),
    ]:
        [reply] = await h.say(CUSTOMER, text)
        assert expected in reply.content, (text, reply.content)


async def test_comma_decimal_in_russian(env: PayEnv) -> None:
    h = env.harness
    [choose] = await h.say(CUSTOMER, "/language")
    await h.press(CUSTOMER, choose, "Русский")
    await h.say(CUSTOMER, "/topup")
    [method] = await h.say(CUSTOMER, "10,50")
    assert "10,50" in method.content


async def test_paid_callback_credits_once_and_user_told(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    deliveries = await env.oxapay.mark_paid(track, duplicates=5)
    assert all(d.acknowledged for d in deliveries)
    assert await env.balance() == 2500
    assert len(await env.ledger()) == 1
    await env.harness.emulator.wait_until(
        lambda: any(
            "Payment received" in m.content for m in env.harness.emulator.sent_messages(CUSTOMER)
        ),
        timeout=15,
    )
    credited = [
        m for m in env.harness.emulator.sent_messages(CUSTOMER) if "Payment received" in m.content
    ]
    assert len(credited) == 1 and "$25.00" in credited[0].content
    await env.audit_ok()


async def test_fifty_concurrent_copies_credit_once(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    await env.oxapay.mark_paid(track, duplicates=50, concurrent=True)
    assert len(await env.ledger()) == 1
    assert await env.balance() == 2500
    await env.audit_ok()


async def test_bad_or_missing_signature_is_rejected(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    for signature in ("bad", "missing"):
        deliveries = await env.oxapay.mark_paid(track, signature=signature)
        assert deliveries and all(d.http_status == 401 for d in deliveries)
    assert await env.balance() == 0
    assert (await env.payment())["status"] == "pending"


async def test_lost_callback_is_credited_by_reconciliation(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    await env.oxapay.mark_paid(track, deliver=False)
    assert await env.balance() == 0
    services = env.harness.application.bot_data.require_services()
    counts = await services.payments.reconcile()
    assert counts.get("credited") == 1
    assert await env.balance() == 2500
    # The late callback, when it finally comes, changes nothing.
    await env.oxapay.resend_callback(track)
    assert len(await env.ledger()) == 1


async def test_paying_then_paid_out_of_order_credits_once(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    await env.oxapay.mark_paying(track)
    assert await env.balance() == 0
    await env.oxapay.mark_paid(track, out_of_order=True, capitalized_status=True)
    assert await env.balance() == 2500
    assert len(await env.ledger()) == 1


async def test_expired_invoice_not_credited_and_user_told(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    await env.oxapay.mark_expired(track)
    assert await env.balance() == 0
    assert (await env.payment())["status"] == "expired"
    await env.harness.emulator.wait_until(
        lambda: any(
            "expired unpaid" in m.content for m in env.harness.emulator.sent_messages(CUSTOMER)
        ),
        timeout=15,
    )


async def test_underpaid_is_flagged_and_admin_credits_once(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    await env.oxapay.mark_underpaid(track, "20")
    assert await env.balance() == 0
    assert (await env.payment())["status"] == "suspicious"
    emulator = env.harness.emulator
    await emulator.wait_until(lambda: bool(emulator.sent_messages(OWNER_ID)), timeout=15)
    alert = emulator.sent_messages(OWNER_ID)[-1]
    assert "needs review" in alert.content
    data = alert.callback_data_for("Credit")
    # A double tap: both presses reach the bot before it edits the message.
    ids = []
    for _ in range(2):
        emulator.press_button(OWNER_ID, alert.message_id, data)
        ids.append(emulator.last_update_id)
    for update_id in ids:
        await env.harness.wait_done(update_id)
    assert await env.balance() == 2000
    assert len(await env.ledger()) == 1
    audit = await env.mongo.db["audit"].find({"action": "payment.credit_reviewed"}).to_list(None)
    assert len(audit) == 1


async def test_cancel_invoice_button(env: PayEnv) -> None:
    await env.start_crypto_topup()
    invoice = env.harness.last_message(CUSTOMER)
    await env.harness.press(CUSTOMER, invoice, "Cancel invoice")
    assert (await env.payment())["status"] == "cancelled"


async def test_callback_rejects_wrong_content_type_and_oversize(env: PayEnv) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        plain = {"Content-Type": "text/plain"}
        async with session.post(env.callback_url, data="x", headers=plain) as r:
            assert r.status == 415
        big = json.dumps({"pad": "x" * 70000})
        async with session.post(
            env.callback_url, data=big, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 413


async def _stars_invoice(env: PayEnv) -> tuple[str, int]:
    h = env.harness
    await h.say(CUSTOMER, "/topup")
    [method] = await h.say(CUSTOMER, "10")
    replies = await h.press(CUSTOMER, method, "Stars")
    invoice = next(m for m in replies if m.invoice is not None)
    assert invoice.invoice is not None
    return invoice.invoice.payload, invoice.invoice.total_amount


async def test_stars_precheckout_refuses_bad_payloads(env: PayEnv) -> None:
    h = env.harness
    payload, stars = await _stars_invoice(env)
    for bad_payload, amount in [
        ("topup:ffffffffffffffffffffffff", stars),
        ("junk", stars),
        (payload, stars + 1),
    ]:
        h.emulator.send_pre_checkout_query(
            CUSTOMER, currency="XTR", total_amount=amount, payload=bad_payload
        )
        await h.wait_done(h.emulator.last_update_id)
    answers = h.emulator.pre_checkout_answers
    assert [a.ok for a in answers] == [False, False, False]
    assert all(a.error_message for a in answers)
    h.emulator.send_pre_checkout_query(
        CUSTOMER, currency="XTR", total_amount=stars, payload=payload
    )
    await h.wait_done(h.emulator.last_update_id)
    assert h.emulator.pre_checkout_answers[-1].ok


async def test_stars_payment_credits_once_and_refund_debits_once(env: PayEnv) -> None:
    h = env.harness
    payload, stars = await _stars_invoice(env)
    h.emulator.send_successful_payment(
        CUSTOMER, currency="XTR", total_amount=stars, payload=payload, charge_id="ch_1"
    )
    await h.wait_done(h.emulator.last_update_id)
    # The same payment reported again in a new update: credited once by its charge id.
    h.emulator.push_update(
        "message",
        {
            "message_id": 9999,
            "date": 1,
            "chat": {"id": CUSTOMER, "type": "private", "first_name": "Payer"},
            "from": {"id": CUSTOMER, "is_bot": False, "first_name": "Payer"},
            "successful_payment": {
                "currency": "XTR",
                "total_amount": stars,
                "invoice_payload": payload,
                "telegram_payment_charge_id": "ch_1",
                "provider_payment_charge_id": "",
            },
        },
    )
    await h.wait_done(h.emulator.last_update_id)
    assert await env.balance() == 1000
    assert len(await env.ledger()) == 1
    # A used payload is refused at pre-checkout.
    h.emulator.send_pre_checkout_query(
        CUSTOMER, currency="XTR", total_amount=stars, payload=payload
    )
    await h.wait_done(h.emulator.last_update_id)
    assert h.emulator.pre_checkout_answers[-1].ok is False
    payment_id = str((await env.payment())["_id"])
    [done] = await h.say(OWNER_ID, f"/refundstars {payment_id}")
    assert "refunded" in done.content
    [again] = await h.say(OWNER_ID, f"/refundstars {payment_id}")
    assert "already_refunded" in again.content
    assert await env.balance() == 0
    assert len(await env.ledger()) == 2
    assert len(h.emulator.charges) == 1
    await env.audit_ok()


async def test_admin_command_from_customer_looks_unknown(env: PayEnv) -> None:
    [reply] = await env.harness.say(CUSTOMER, "/refundstars abc")
    assert "didn't understand" in reply.content


async def test_balance_shows_history(env: PayEnv) -> None:
    track = await env.start_crypto_topup()
    await env.oxapay.mark_paid(track)
    [shown] = await env.harness.say(CUSTOMER, "/balance")
    assert "$25.00" in shown.content and "top-up" in shown.content


async def _apply_gate(env: PayEnv, gate: str) -> None:
    h = env.harness
    data = h.application.bot_data
    if gate == "maintenance":
        await data.require_services().runtime.set_maintenance(True, "Back at 18:00 UTC.")
    elif gate == "blocked":
        await env.mongo.db["users"].update_one({"_id": CUSTOMER}, {"$set": {"blocked": True}})
    elif gate == "session":
        await h.say(CUSTOMER, "/support")  # a conversation in progress, then idle too long
        await h.flush()
        past = h.clock() - timedelta(minutes=1)
        await env.mongo.db["sessions"].update_many({}, {"$set": {"expires_at": past}})
    elif gate == "flood":
        assert data.flood is not None
        while data.flood.check(CUSTOMER) != "notice":
            pass
    else:
        raise AssertionError(gate)


GATE_REPLY = {
    "maintenance": "under maintenance",
    "blocked": "account is blocked",
    "session": "session expired",
    "flood": None,  # muted: no reply at all
}


@pytest.mark.parametrize("gate", list(GATE_REPLY))
async def test_payments_pass_every_gate(env: PayEnv, gate: str) -> None:
    """A pre-checkout query is answered ok and a successful payment credited and
    acknowledged, whatever the maintenance, blocked, session or flood gate would say."""
    h = env.harness
    payload, stars = await _stars_invoice(env)
    await _apply_gate(env, gate)
    mark = h.emulator.cursor(CUSTOMER)
    h.emulator.send_pre_checkout_query(
        CUSTOMER, currency="XTR", total_amount=stars, payload=payload
    )
    await h.wait_done(h.emulator.last_update_id)
    assert [a.ok for a in h.emulator.pre_checkout_answers] == [True]
    h.emulator.send_successful_payment(
        CUSTOMER, currency="XTR", total_amount=stars, payload=payload, charge_id=f"ch_{gate}"
    )
    await h.wait_done(h.emulator.last_update_id)
    assert await env.balance() == 1000
    assert len(await env.ledger()) == 1
    assert h.emulator.sent_messages(CUSTOMER, since=mark) == []  # no gate spoke up
    [job] = h.application.job_queue.get_jobs_by_name("outbox:deliver")  # type: ignore[union-attr]
    await job.run(h.application)
    [ack] = h.emulator.sent_messages(CUSTOMER, since=mark)
    assert "Payment received: $10.00. New balance: $10.00" in ack.content
    # The gate was in force all along: other updates still stop at it.
    mark = h.emulator.cursor(CUSTOMER)
    update_id = h.emulator.send_message(CUSTOMER, "/balance")
    await h.wait_done(update_id)
    replies = h.emulator.sent_messages(CUSTOMER, since=mark)
    expected = GATE_REPLY[gate]
    if expected is None:
        assert replies == []
    else:
        assert any(expected in m.content for m in replies), [m.content for m in replies]
    await env.audit_ok()


async def test_a_failing_pre_checkout_is_refused_and_the_update_ends_there(
    env: PayEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused rather than left to time out (nothing is charged, the user can retry), and
    no later gate answers it a second time (here the blocked gate would)."""
    h = env.harness
    payload, stars = await _stars_invoice(env)
    await env.mongo.db["users"].update_one({"_id": CUSTOMER}, {"$set": {"blocked": True}})
    payments = h.application.bot_data.require_services().payments

    async def broken(*args: object) -> None:
        raise ConnectionError("no primary")

    monkeypatch.setattr(payments, "check_stars_checkout", broken)
    h.emulator.send_pre_checkout_query(
        CUSTOMER, currency="XTR", total_amount=stars, payload=payload
    )
    await h.wait_done(h.emulator.last_update_id)
    [answer] = h.emulator.pre_checkout_answers
    assert answer.ok is False
    assert answer.error_message is not None and "went wrong" in answer.error_message
