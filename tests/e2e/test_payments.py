"""Top-ups end to end: the bot, the fake OxaPay (with signed callbacks to our endpoint)
and Telegram Stars through the emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import Secrets
from handlers.oxapay_callback import make_oxapay_callback
from sandbox.oxapay import FakeOxaPay, sign
from sandbox.telegram import SentMessage
from storage.client import Mongo
from storage.ledger import LedgerEntry, LedgerKeyConflict
from tests.conftest import OWNER_ID, FakeClock, make_settings

KEY = "test-merchant-key-0123456789"
PROVIDER_TOKEN = "284685063:TEST:provider-token-abcdef"  # noqa: S105 - a test token
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
        """The customer's latest payment."""
        doc = await self.mongo.db["payments"].find_one(
            {"user_id": CUSTOMER}, sort=[("created_at", -1), ("_id", -1)]
        )
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
            ),
            # Every rail on: these tests cover Stars too (off by default).
            "stars": base.payments.stars.model_copy(update={"enabled": True}),
        }
    )
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        oxapay_merchant_api_key=SecretStr(KEY),
        telegram_payment_provider_token=SecretStr(PROVIDER_TOKEN),
    )
    settings = make_settings(payments=payments, secrets=secrets)
    harness = BotHarness(settings, mongo=mongo, clock=clock, rate_limits=False)
    holder["h"] = harness
    await harness.start()
    harness.add_user(CUSTOMER, first_name="Payer")
    harness.add_user(OWNER_ID)
    await harness.say(CUSTOMER, "/start")
    # The terms are accepted once, before the first top-up (tests/e2e/test_legal.py).
    [terms] = await harness.say(CUSTOMER, "/topup")
    await harness.press(CUSTOMER, terms, "I accept")
    await harness.say(CUSTOMER, "/cancel")
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


async def _signed_callback(env: PayEnv, payload: dict[str, object]) -> int:
    """Posts a callback as OxaPay signs it (for shapes the fake never sends by itself)."""
    import aiohttp

    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "HMAC": sign(body, KEY)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(env.callback_url, data=body, headers=headers) as response,
    ):
        assert await response.text() == "ok" or response.status != 200
        return response.status


async def _admin_alert(env: PayEnv, needle: str) -> SentMessage:
    emulator = env.harness.emulator
    await emulator.wait_until(
        lambda: any(needle in m.content for m in emulator.sent_messages(OWNER_ID)), timeout=15
    )
    return [m for m in emulator.sent_messages(OWNER_ID) if needle in m.content][-1]


async def _customer_told(env: PayEnv, needle: str) -> list[SentMessage]:
    emulator = env.harness.emulator
    await emulator.wait_until(
        lambda: any(needle in m.content for m in emulator.sent_messages(CUSTOMER)), timeout=15
    )
    return [m for m in emulator.sent_messages(CUSTOMER) if needle in m.content]


async def test_underpaid_in_a_coin_offers_the_converted_amount(env: PayEnv) -> None:
    """Paid in TRX: the received amount is the transactions' converted value."""
    track = await env.start_crypto_topup()
    await env.oxapay.mark_underpaid(track, "20", pay_currency="TRX")
    payment = await env.payment()
    assert payment["status"] == "suspicious" and payment["received_cents"] == 2000
    alert = await _admin_alert(env, "needs review")
    assert "$20.00" in alert.content
    await env.harness.press(OWNER_ID, alert, "Credit $20.00")
    assert await env.balance() == 2000
    await env.audit_ok()


async def test_unknown_received_amount_is_typed_by_an_admin(env: PayEnv) -> None:
    """No one-tap credit of the invoice amount when the received amount is unknown: the
    admin types it (validated), confirms it, and it is credited once and audited."""
    h = env.harness
    track = await env.start_crypto_topup()
    invoice = env.oxapay.invoice(track)
    status = await _signed_callback(
        env,
        {
            "track_id": track,
            "status": "Underpaid",
            "type": "invoice",
            "amount": "25",
            "currency": "USD",
            "order_id": invoice.order_id,
            "txs": [
                {
                    "status": "confirmed",
                    "tx_hash": "0x" + "1" * 64,
                    "received_amount": "51.2",
                    "currency": "TRX",
                    "network": "Tron Network",
                }
            ],
        },
    )
    assert status == 200
    payment = await env.payment()
    assert payment["status"] == "suspicious" and payment["received_cents"] is None
    # The review button of an old alert credits nothing when the amount is unknown.
    services = h.application.bot_data.require_services()
    outcome, _ = await services.payments.credit_reviewed(OWNER_ID, str(payment["_id"]))
    assert outcome == "needs_amount"
    assert await env.balance() == 0

    alert = await _admin_alert(env, "needs review")
    assert not [text for text, _ in alert.buttons if "Credit" in text]
    [ask] = await h.press(OWNER_ID, alert, "Enter the received amount")
    assert "at most the invoice amount $25.00" in ask.content
    for text, expected in [
        ("abc", "not an amount"),
        ("-3", "not an amount"),
        ("30", "more than the invoice amount ($25.00)"),
        ("12.345", "2 decimal"),
    ]:
        [answer] = await h.say(OWNER_ID, text)
        assert expected in answer.content, (text, answer.content)
    assert await env.balance() == 0
    [confirm] = await h.say(OWNER_ID, "12.34")
    assert "Credit <b>$12.34</b>" in confirm.content or "$12.34" in confirm.content
    data = confirm.callback_data_for("Confirm")
    ids = []
    for _ in range(2):  # a double tap
        h.emulator.press_button(OWNER_ID, confirm.message_id, data)
        ids.append(h.emulator.last_update_id)
    for update_id in ids:
        await h.wait_done(update_id)
    assert "Credited $12.34" in h.emulator.message(OWNER_ID, confirm.message_id).content
    assert await env.balance() == 1234
    assert len(await env.ledger()) == 1
    audit = await env.mongo.db["audit"].find({"action": "payment.credit_reviewed"}).to_list(None)
    assert len(audit) == 1 and audit[0]["after"]["typed"] is True
    [told] = await _customer_told(env, "Payment received")
    assert "$12.34" in told.content
    await env.audit_ok()


async def test_underpaid_credited_then_paid_in_full_credits_the_difference(env: PayEnv) -> None:
    """Underpaid $20 of $25, credited by an admin, then paid in full: the final Paid
    callback is answered 200 and credits the missing $5 once, under its own key."""
    track = await env.start_crypto_topup()
    await env.oxapay.mark_underpaid(track, "20")
    alert = await _admin_alert(env, "needs review")
    await env.harness.press(OWNER_ID, alert, "Credit $20.00")
    assert await env.balance() == 2000
    deliveries = await env.oxapay.mark_paid(track, "25")
    assert deliveries and all(d.acknowledged for d in deliveries)
    assert await env.balance() == 2500
    for _ in range(3):  # retries and replays change nothing
        assert all(d.acknowledged for d in await env.oxapay.resend_callback(track))
    services = env.harness.application.bot_data.require_services()
    await services.payments.reconcile()
    keys = sorted(str(e["_id"]) for e in await env.ledger())
    assert keys == [f"topup:oxapay:{track}", f"topup:oxapay:{track}:total:2500"]
    assert await env.balance() == 2500
    payment = await env.payment()
    assert payment["credited_cents"] == 2500 and not payment.get("pending_notices")
    await _customer_told(env, "Payment received: $20.00")
    [told] = await _customer_told(env, "Payment received: $5.00")
    assert "$25.00" in told.content  # the new balance
    await env.audit_ok()


async def test_admin_credit_racing_the_paid_callback_tops_up_once(env: PayEnv) -> None:
    """The admin's reviewed credit is written, the worker dies before the payment is
    marked paid, then OxaPay's Paid arrives: the key holds $20, the payment is owed $25;
    no 500 loop, the difference is credited."""
    track = await env.start_crypto_topup()
    await env.oxapay.mark_underpaid(track, "20")
    payment = await env.payment()
    services = env.harness.application.bot_data.require_storage()
    await services.ledger.apply(
        user_id=CUSTOMER,
        amount_cents=2000,
        kind="topup",
        key=f"topup:oxapay:{track}",
        now=payment["created_at"],
        meta={"payment_id": str(payment["_id"]), "provider": "oxapay"},
    )
    deliveries = await env.oxapay.mark_paid(track, "25")
    assert deliveries and all(d.acknowledged for d in deliveries)
    assert await env.balance() == 2500
    assert (await env.payment())["status"] == "paid"
    await env.audit_ok()


async def test_a_ledger_key_clash_alerts_admins_and_answers_ok(
    env: PayEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clash the service cannot resolve never becomes a 500 that OxaPay retries for
    hours: admins are alerted and the callback is answered 200 ok."""
    track = await env.start_crypto_topup()
    storage = env.harness.application.bot_data.require_storage()
    entry = LedgerEntry(
        key=f"topup:oxapay:{track}",
        user_id=OWNER_ID,
        amount_cents=100,
        kind="topup",
        seq=1,
        created_at=(await env.payment())["created_at"],
        meta={},
    )

    async def clash(**_: object) -> None:
        raise LedgerKeyConflict(entry.key, entry)

    monkeypatch.setattr(storage.ledger, "apply", clash)
    deliveries = await env.oxapay.mark_paid(track)
    assert deliveries and all(d.acknowledged for d in deliveries)
    alert = await _admin_alert(env, "Ledger key clash")
    assert entry.key in alert.content
    assert await env.balance() == 0


async def test_customer_told_after_a_crash_between_paid_and_the_notice(
    env: PayEnv, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after marking the payment paid and before queueing the notice: a
    replayed callback queues it, and so does reconciliation; once."""
    services = env.harness.application.bot_data.require_services()
    notices = services.payments._notices
    real = notices.topup_credited
    crash = {"next": True}

    async def dying(*args: object, **kwargs: object) -> None:
        if crash["next"]:
            crash["next"] = False
            raise RuntimeError("worker killed")
        await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(notices, "topup_credited", dying)
    emulator = env.harness.emulator
    track = await env.start_crypto_topup()
    await env.oxapay.mark_paid(track)  # credited, marked paid, then the crash
    assert await env.balance() == 2500
    assert (await env.payment())["status"] == "paid"
    assert all(d.acknowledged for d in await env.oxapay.resend_callback(track))
    await _customer_told(env, "Payment received")

    # Another payment whose callback is never replayed: reconciliation queues the notice.
    crash["next"] = True
    mark = emulator.cursor(CUSTOMER)
    track = await env.start_crypto_topup()
    await env.oxapay.mark_paid(track)
    assert await env.balance() == 5000
    clock.advance(minutes=1)
    counts = await services.payments.reconcile()
    assert counts.get("followup_notices") == 1
    await emulator.wait_until(
        lambda: any(
            "Payment received" in m.content for m in emulator.sent_messages(CUSTOMER, since=mark)
        ),
        timeout=15,
    )
    assert await services.payments.reconcile() == {}
    told = [m for m in emulator.sent_messages(CUSTOMER) if "Payment received" in m.content]
    assert len(told) == 2


async def _paid_stars(
    env: PayEnv, charge_id: str, *, deliver: bool = True, history_index: int | None = None
) -> dict[str, object]:
    """A Stars top-up of $10 paid with ``charge_id`` (its update lost unless ``deliver``)."""
    h = env.harness
    services = h.application.bot_data.require_services()
    created = await services.payments.create_stars_topup(CUSTOMER, 1000)
    update_id = h.emulator.send_successful_payment(
        CUSTOMER,
        currency="XTR",
        total_amount=created.stars,
        payload=created.payload,
        charge_id=charge_id,
        deliver=deliver,
        history_index=history_index,
    )
    if deliver:
        await h.wait_done(update_id)
    doc = await env.mongo.db["payments"].find_one({"order_id": created.payload})
    assert doc is not None
    return dict(doc)


async def _run_job(env: PayEnv, name: str) -> None:
    app = env.harness.application
    assert app.job_queue is not None
    [job] = app.job_queue.get_jobs_by_name(name)
    await job.run(app)


async def test_stars_refund_whose_answer_is_lost_is_settled_from_the_history(
    env: PayEnv,
) -> None:
    """Telegram refunds, then the answer is lost (a 502): the debit is not compensated
    (the customer got the Stars back); the job confirms the refund from the history."""
    h = env.harness
    payment = await _paid_stars(env, "ch_lost")
    assert await env.balance() == 1000
    h.emulator.fail_next("refundStarPayment", after=True)
    [answer] = await h.say(OWNER_ID, f"/refundstars {payment['_id']}")
    assert "did not answer" in answer.content
    assert [c.refunded for c in h.emulator.charges] == [True]
    assert await env.balance() == 0  # debited once, not given back
    await _run_job(env, "payments:reconcile-stars")
    assert (await env.payment())["status"] == "refunded"
    assert await env.balance() == 0
    kinds = sorted(str(e["kind"]) for e in await env.ledger())
    assert kinds == ["refund", "topup"]
    await env.audit_ok()


async def test_stars_refund_refused_by_telegram_is_compensated(env: PayEnv) -> None:
    h = env.harness
    payment = await _paid_stars(env, "ch_refused")
    h.emulator.fail_next(
        "refundStarPayment", after=False, status=400, description="Bad Request: CHARGE_NOT_FOUND"
    )
    [answer] = await h.say(OWNER_ID, f"/refundstars {payment['_id']}")
    assert "refused" in answer.content and "given back" in answer.content
    assert await env.balance() == 1000
    assert (await env.payment())["status"] == "paid"
    assert not (await env.payment())["refund_started_at"]
    [done] = await h.say(OWNER_ID, f"/refundstars {payment['_id']}")  # may be tried again
    assert "refunded" in done.content
    assert await env.balance() == 0
    await env.audit_ok()


async def test_stars_refund_never_made_alerts_admins_and_retries_without_a_second_debit(
    env: PayEnv, clock: FakeClock
) -> None:
    """No answer and no refund made (a 502 before Telegram acted): the debit stands, the
    history never shows a refund, admins are alerted after the bound, and /refundstars
    again retries the same attempt: refunded, debited once."""
    h = env.harness
    payment = await _paid_stars(env, "ch_never")
    h.emulator.fail_next("refundStarPayment", after=False)
    [answer] = await h.say(OWNER_ID, f"/refundstars {payment['_id']}")
    assert "did not answer" in answer.content
    assert [c.refunded for c in h.emulator.charges] == [False]
    assert await env.balance() == 0
    await _run_job(env, "payments:reconcile-stars")
    assert (await env.payment())["status"] == "paid"  # still unknown: nothing in the history
    clock.advance(minutes=31)
    await _run_job(env, "payments:reconcile-stars")
    await _run_job(env, "payments:reconcile-stars")  # alerted once
    alert = await _admin_alert(env, "Stars refund unknown")
    assert f"/refundstars {payment['_id']}" in alert.content
    alerts = [
        m for m in h.emulator.sent_messages(OWNER_ID) if "Stars refund unknown" in m.content
    ]
    assert len(alerts) == 1
    [done] = await h.say(OWNER_ID, f"/refundstars {payment['_id']}")
    assert "refunded" in done.content
    assert [c.refunded for c in h.emulator.charges] == [True]
    assert await env.balance() == 0
    refunds = [e for e in await env.ledger() if e["kind"] == "refund"]
    assert len(refunds) == 1  # the retry reused the attempt's debit
    await env.audit_ok()


async def test_stars_refund_interrupted_between_debit_and_call_is_recoverable(
    env: PayEnv, clock: FakeClock
) -> None:
    """The worker dies after the debit, before refundStarPayment: not "in progress"
    forever. After the retry bound the same attempt is retried; before it, it waits."""
    h = env.harness
    payment = await _paid_stars(env, "ch_crash")
    services = h.application.bot_data.require_services()

    async def killed(user_id: int, charge_id: str) -> None:
        raise asyncio.CancelledError  # the task dies with the worker

    with pytest.raises(asyncio.CancelledError):
        await services.payments.refund_stars(OWNER_ID, str(payment["_id"]), killed)
    assert await env.balance() == 0
    [busy] = await h.say(OWNER_ID, f"/refundstars {payment['_id']}")
    assert "in_progress" in busy.content
    clock.advance(minutes=6)
    [done] = await h.say(OWNER_ID, f"/refundstars {payment['_id']}")
    assert "refunded" in done.content
    assert await env.balance() == 0
    assert len([e for e in await env.ledger() if e["kind"] == "refund"]) == 1
    clock.advance(minutes=60)
    await _run_job(env, "payments:reconcile-stars")
    assert not [m for m in h.emulator.sent_messages(OWNER_ID) if "unknown" in m.content]
    await env.audit_ok()


async def test_stars_reconciliation_survives_a_history_that_is_not_append_only(
    env: PayEnv,
) -> None:
    """Payments whose updates were lost are credited from getStarTransactions, also one
    listed before transactions the job had already read."""
    h = env.harness
    await _run_job(env, "payments:reconcile-stars")
    first = await _paid_stars(env, "ch_a", deliver=False)
    await _run_job(env, "payments:reconcile-stars")
    assert await env.balance() == 1000
    # Telegram lists it first (e.g. dated earlier), before what the job has read.
    early = await _paid_stars(env, "ch_b", deliver=False, history_index=0)
    assert [tx["id"] for tx in h.emulator.star_transactions] == ["ch_b", "ch_a"]
    late = await _paid_stars(env, "ch_c", deliver=False)
    await _run_job(env, "payments:reconcile-stars")
    await _run_job(env, "payments:reconcile-stars")
    for charge, doc in (("ch_a", first), ("ch_b", early), ("ch_c", late)):
        payment = await env.mongo.db["payments"].find_one({"_id": doc["_id"]})
        assert payment is not None and payment["status"] == "paid", charge
    assert await env.balance() == 3000
    keys = [str(e["_id"]) for e in await env.ledger()]
    assert sorted(keys) == ["topup:stars:ch_a", "topup:stars:ch_b", "topup:stars:ch_c"]
    await env.audit_ok()


async def test_paid_for_more_than_the_invoice_after_a_credit_goes_to_admins(env: PayEnv) -> None:
    """A further Paid above the invoice credits up to the invoice only (like a first
    overpayment, the excess is an admin's decision) and alerts admins."""
    track = await env.start_crypto_topup()
    await env.oxapay.mark_paid(track)
    assert await env.balance() == 2500
    deliveries = await env.oxapay.mark_paid(track, "31")
    assert deliveries and all(d.acknowledged for d in deliveries)
    assert await env.balance() == 2500
    alert = await _admin_alert(env, "more than its invoice")
    assert "$31.00" in alert.content and "$25.00" in alert.content
    await env.audit_ok()


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


@pytest.mark.parametrize("rail", ["stars", "card"])
@pytest.mark.parametrize("gate", list(GATE_REPLY))
async def test_payments_pass_every_gate(env: PayEnv, gate: str, rail: str) -> None:
    """A pre-checkout query is answered ok and a successful payment credited and
    acknowledged, whatever the maintenance, blocked, session or flood gate would say."""
    h = env.harness
    if rail == "stars":
        payload, amount = await _stars_invoice(env)
        currency, provider = "XTR", ""
    else:
        invoice = await _card_invoice(env, "10")
        assert invoice.invoice is not None
        payload, amount = invoice.invoice.payload, invoice.invoice.total_amount
        currency, provider = "USD", f"pi_{gate}"
    await _apply_gate(env, gate)
    mark = h.emulator.cursor(CUSTOMER)
    h.emulator.send_pre_checkout_query(
        CUSTOMER, currency=currency, total_amount=amount, payload=payload
    )
    await h.wait_done(h.emulator.last_update_id)
    assert [a.ok for a in h.emulator.pre_checkout_answers] == [True]
    h.emulator.send_successful_payment(
        CUSTOMER,
        currency=currency,
        total_amount=amount,
        payload=payload,
        charge_id=f"ch_{gate}",
        provider_payment_charge_id=provider,
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

    monkeypatch.setattr(payments, "check_checkout", broken)
    h.emulator.send_pre_checkout_query(
        CUSTOMER, currency="XTR", total_amount=stars, payload=payload
    )
    await h.wait_done(h.emulator.last_update_id)
    [answer] = h.emulator.pre_checkout_answers
    assert answer.ok is False
    assert answer.error_message is not None and "went wrong" in answer.error_message


# -- cards through Telegram Payments (a payment provider) ----------------------------------


async def _card_invoice(env: PayEnv, amount: str = "25") -> SentMessage:
    """/topup → amount → Card: the invoice Telegram shows, in minor units."""
    h = env.harness
    await h.say(CUSTOMER, "/topup")
    [method] = await h.say(CUSTOMER, amount)
    labels = [label for row in method.button_rows for label, _ in row]
    assert labels[0].startswith("💳 Card"), labels  # the card first, then crypto and Stars
    replies = await h.press(CUSTOMER, method, "Card")
    invoice = next(m for m in replies if m.invoice is not None)
    assert any("Pay the invoice above by card" in m.content for m in replies)
    return invoice


def _card_payment_message(
    payload: str, amount: int, charge: str, provider: str
) -> dict[str, object]:
    return {
        "message_id": 9999,
        "date": 1,
        "chat": {"id": CUSTOMER, "type": "private", "first_name": "Payer"},
        "from": {"id": CUSTOMER, "is_bot": False, "first_name": "Payer"},
        "successful_payment": {
            "currency": "USD",
            "total_amount": amount,
            "invoice_payload": payload,
            "telegram_payment_charge_id": charge,
            "provider_payment_charge_id": provider,
        },
    }


async def _paid_card(env: PayEnv, amount: str = "25") -> tuple[dict[str, object], str]:
    """A card top-up paid through the emulator's checkout; (payment, provider charge id)."""
    h = env.harness
    invoice = await _card_invoice(env, amount)
    query_id = h.emulator.checkout(CUSTOMER, invoice.message_id)
    await h.wait_done(h.emulator.last_update_id)
    assert h.emulator.pre_checkout_answers[-1].ok
    update_id = h.emulator.complete_checkout(query_id)
    await h.wait_done(update_id)
    payment = await env.payment()
    return payment, str(payment["provider_ref"])


async def test_card_invoice_is_in_minor_units_with_the_provider_token(env: PayEnv) -> None:
    invoice = await _card_invoice(env, "25.50")
    assert invoice.invoice is not None
    assert (invoice.invoice.currency, invoice.invoice.total_amount) == ("USD", 2550)
    assert invoice.invoice.payload.startswith("card:")
    payment = await env.payment()
    assert (payment["provider"], payment["status"], payment["minor_amount"]) == (
        "card", "pending", 2550
    )


async def test_card_top_up_credited_once_under_twenty_duplicate_deliveries(
    env: PayEnv,
) -> None:
    """The provider's charge id keys the credit: 20 more deliveries of the same
    successful_payment (new update ids, arriving together) credit nothing more."""
    h = env.harness
    payment, provider_ref = await _paid_card(env)
    assert provider_ref.startswith("pi_")
    assert await env.balance() == 2500
    message = _card_payment_message(
        str(payment["order_id"]), 2500, str(payment["telegram_charge_id"]), provider_ref
    )
    ids = [h.emulator.push_update("message", message) for _ in range(20)]
    await asyncio.gather(*(h.wait_done(update_id) for update_id in ids))
    assert await env.balance() == 2500
    ledger = await env.ledger()
    assert [e["_id"] for e in ledger] == [f"topup:card:{provider_ref}"]
    assert (await env.payment())["status"] == "paid"
    [job] = h.application.job_queue.get_jobs_by_name("outbox:deliver")  # type: ignore[union-attr]
    await job.run(h.application)
    credited = [m for m in h.emulator.sent_messages(CUSTOMER) if "Payment received" in m.content]
    assert len(credited) == 1 and "$25.00" in credited[0].content
    await env.audit_ok()


async def test_forged_or_foreign_card_pre_checkout_is_refused(
    env: PayEnv, clock: FakeClock
) -> None:
    h = env.harness
    other = 4343
    h.add_user(other, first_name="Other")
    invoice = await _card_invoice(env)
    assert invoice.invoice is not None
    payload = invoice.invoice.payload
    cases = [
        (other, "USD", 2500, payload, "another account"),  # someone else's invoice
        (CUSTOMER, "USD", 2500, "card:ffffffffffffffffffffffff", "unknown"),  # forged
        (CUSTOMER, "USD", 2500, "card:junk", "unknown"),
        (CUSTOMER, "USD", 2400, payload, "does not match"),  # amount changed
        (CUSTOMER, "EUR", 2500, payload, "does not match"),  # currency changed
    ]
    for user_id, currency, amount, bad, expected in cases:
        h.emulator.send_pre_checkout_query(
            user_id, currency=currency, total_amount=amount, payload=bad
        )
        await h.wait_done(h.emulator.last_update_id)
        answer = h.emulator.pre_checkout_answers[-1]
        assert answer.ok is False and expected in str(answer.error_message), (bad, answer)
    # Past its lifetime the invoice is refused too; nothing was charged or credited.
    clock.advance(minutes=61)
    query_id = h.emulator.checkout(CUSTOMER, invoice.message_id)
    await h.wait_done(h.emulator.last_update_id)
    answer = h.emulator.pre_checkout_answers[-1]
    assert answer.ok is False and "expired" in str(answer.error_message)
    with pytest.raises(ValueError):
        h.emulator.complete_checkout(query_id)
    assert await env.balance() == 0 and await env.ledger() == []


async def test_a_paid_card_invoice_is_refused_at_a_second_checkout(env: PayEnv) -> None:
    h = env.harness
    payment, _ = await _paid_card(env)
    h.emulator.send_pre_checkout_query(
        CUSTOMER, currency="USD", total_amount=2500, payload=str(payment["order_id"])
    )
    await h.wait_done(h.emulator.last_update_id)
    assert h.emulator.pre_checkout_answers[-1].ok is False
    assert await env.balance() == 2500


async def test_unpaid_card_invoice_expires_cleanly_and_a_late_payment_still_credits(
    env: PayEnv, clock: FakeClock
) -> None:
    """Telegram cannot be asked about provider payments: the reconcile job expires the
    invoice after its lifetime (and the grace); a successful_payment that still comes
    (approved just before expiry) is credited, money is never ignored."""
    h = env.harness
    invoice = await _card_invoice(env)
    query_id = h.emulator.checkout(CUSTOMER, invoice.message_id)
    await h.wait_done(h.emulator.last_update_id)
    clock.advance(minutes=64)
    await _run_job(env, "payments:reconcile")
    assert (await env.payment())["status"] == "pending"  # within the grace
    clock.advance(minutes=2)
    await _run_job(env, "payments:reconcile")
    assert (await env.payment())["status"] == "expired"
    await _run_job(env, "payments:reconcile")
    await _run_job(env, "outbox:deliver")
    expired = [m for m in h.emulator.sent_messages(CUSTOMER) if "expired unpaid" in m.content]
    assert len(expired) == 1
    update_id = h.emulator.complete_checkout(query_id)
    await h.wait_done(update_id)
    assert (await env.payment())["status"] == "paid"
    assert await env.balance() == 2500


async def test_card_refund_is_recorded_once_and_the_admin_refunds_at_the_provider(
    env: PayEnv,
) -> None:
    h = env.harness
    payment, provider_ref = await _paid_card(env)
    [listing] = await h.say(OWNER_ID, "/payments card")
    assert provider_ref in listing.content and str(payment["_id"]) in listing.content
    [done] = await h.say(OWNER_ID, f"/refundcard {payment['_id']}")
    assert "recorded" in done.content and "$25.00" in done.content
    assert provider_ref in done.content and "payment provider" in done.content
    [again] = await h.say(OWNER_ID, f"/refundcard {payment['_id']}")
    assert "already recorded" in again.content
    assert await env.balance() == 0
    kinds = sorted(str(e["kind"]) for e in await env.ledger())
    assert kinds == ["refund", "topup"]
    assert (await env.payment())["status"] == "refunded"
    audit = await env.mongo.db["audit"].find({"action": "payment.refund_card"}).to_list(None)
    assert len(audit) == 1
    # A late copy of the payment does not credit it again.
    message = _card_payment_message(
        str(payment["order_id"]), 2500, str(payment["telegram_charge_id"]), provider_ref
    )
    await h.wait_done(h.emulator.push_update("message", message))
    assert await env.balance() == 0
    await env.audit_ok()


@asynccontextmanager
async def _bot(
    mongo: Mongo, clock: FakeClock, *, card: bool, stars: bool | None = None
) -> AsyncIterator[BotHarness]:
    """A bot with the default rails (no OxaPay key: crypto off), a provider token if
    ``card``, and Stars as configured (``None``: the default)."""
    base = make_settings()
    payments = base.payments
    if stars is not None:
        payments = payments.model_copy(
            update={"stars": payments.stars.model_copy(update={"enabled": stars})}
        )
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        telegram_payment_provider_token=SecretStr(PROVIDER_TOKEN) if card else None,
    )
    harness = BotHarness(
        make_settings(payments=payments, secrets=secrets), mongo=mongo, clock=clock,
        rate_limits=False,
    )
    await harness.start()
    harness.add_user(CUSTOMER, first_name="Payer")
    await harness.say(CUSTOMER, "/start")
    try:
        yield harness
    finally:
        await harness.close()


async def _start_topup(h: BotHarness) -> None:
    """/topup, accepting the terms the first time (tests/e2e/test_legal.py)."""
    [first] = await h.say(CUSTOMER, "/topup")
    if "Do you accept the terms?" in first.content:
        await h.press(CUSTOMER, first, "I accept")


async def _methods_offered(h: BotHarness) -> list[str]:
    await _start_topup(h)
    [method] = await h.say(CUSTOMER, "10")
    return [str(data) for row in method.button_rows for _, data in row]


def test_stars_are_off_by_default() -> None:
    assert make_settings().payments.stars.enabled is False
    assert make_settings().payments.card.enabled is True


async def test_stars_not_offered_by_default_and_old_stars_invoices_refused(
    mongo: Mongo, clock: FakeClock
) -> None:
    async with _bot(mongo, clock, card=True) as h:
        assert await _methods_offered(h) == ["topup:method:card", "topup:cancel"]
        # A Stars invoice sent while Stars were on is refused at pre-checkout.
        storage = h.application.bot_data.require_storage()
        payment = await storage.payments.create(
            {
                "user_id": CUSTOMER, "provider": "stars", "order_id": "topup:old",
                "amount_cents": 1000, "stars": 770, "currency": "USD", "status": "pending",
                "created_at": clock(), "updated_at": clock(),
                "expires_at": clock() + timedelta(minutes=30), "history": [],
            }
        )
        payload = f"topup:{payment['_id']}"
        await mongo.db["payments"].update_one(
            {"_id": payment["_id"]}, {"$set": {"order_id": payload}}
        )
        h.emulator.send_pre_checkout_query(
            CUSTOMER, currency="XTR", total_amount=770, payload=payload
        )
        await h.wait_done(h.emulator.last_update_id)
        [answer] = h.emulator.pre_checkout_answers
        assert answer.ok is False
        assert "Stars are no longer accepted" in str(answer.error_message)


async def test_stars_offered_when_the_operator_turns_them_on(
    mongo: Mongo, clock: FakeClock
) -> None:
    async with _bot(mongo, clock, card=True, stars=True) as h:
        offered = await _methods_offered(h)
        assert offered == ["topup:method:card", "topup:method:stars", "topup:cancel"]


async def test_a_rail_turned_off_since_its_button_was_shown_creates_nothing(
    mongo: Mongo, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _bot(mongo, clock, card=True, stars=True) as h:
        await _start_topup(h)
        [method] = await h.say(CUSTOMER, "10")
        # The operator turns Stars off (a restart with the new setting) meanwhile.
        payments = h.application.bot_data.require_services().payments
        off = dataclasses.replace(payments.config, stars_enabled=False)
        monkeypatch.setattr(payments, "_config", off)
        replies = await h.press(CUSTOMER, method, "Stars")
        assert any("no longer offered" in m.content for m in replies)
        assert await mongo.db["payments"].count_documents({}) == 0


async def test_with_no_rail_enabled_top_up_points_to_support(
    mongo: Mongo, clock: FakeClock
) -> None:
    async with _bot(mongo, clock, card=False) as h:
        [reply] = await h.say(CUSTOMER, "/topup")
        assert "not available" in reply.content and "@shiplabel_support" in reply.content
        assert await mongo.db["payments"].count_documents({}) == 0


async def test_a_card_payment_whose_handling_died_is_handled_again(env: PayEnv) -> None:
    """A worker claimed the successful_payment's update id and died before crediting it:
    the Bot API keeps no list of provider payments, so the update (replayed from the inbox
    or re-delivered) is the only signal and must not be skipped as already handled. The
    credit is idempotent by the provider's charge id."""
    h = env.harness
    invoice = await _card_invoice(env)
    assert invoice.invoice is not None
    services = h.application.bot_data.require_services()
    update_id = h.emulator.last_update_id + 1
    assert await services.sessions.claim_update(update_id)  # the dead worker's claim
    sent = h.emulator.send_successful_payment(
        CUSTOMER,
        currency="USD",
        total_amount=2500,
        payload=invoice.invoice.payload,
        charge_id="tg_died",
        provider_payment_charge_id="pi_died",
    )
    assert sent == update_id
    await h.wait_done(update_id)
    assert await env.balance() == 2500
    assert [e["_id"] for e in await env.ledger()] == ["topup:card:pi_died"]
    # Handled once more (a second replay): still one credit.
    message = _card_payment_message(invoice.invoice.payload, 2500, "tg_died", "pi_died")
    await h.wait_done(h.emulator.push_update("message", message))
    assert len(await env.ledger()) == 1
    await env.audit_ok()


async def test_a_card_invoice_telegram_refused_cancels_the_payment(env: PayEnv) -> None:
    """sendInvoice refused (or unanswered): the payment is cancelled, the customer told to
    retry, and an invoice that did arrive is refused at pre-checkout (nothing charged)."""
    h = env.harness
    await h.say(CUSTOMER, "/topup")
    [method] = await h.say(CUSTOMER, "25")
    h.emulator.fail_next("sendInvoice", after=True)  # sent, but the answer is lost
    replies = await h.press(CUSTOMER, method, "Card")
    assert any("not answering" in m.content for m in replies)
    payment = await env.payment()
    assert payment["status"] == "cancelled"
    [invoice] = [m for m in h.emulator.sent_messages(CUSTOMER) if m.invoice is not None]
    h.emulator.checkout(CUSTOMER, invoice.message_id)
    await h.wait_done(h.emulator.last_update_id)
    answer = h.emulator.pre_checkout_answers[-1]
    assert answer.ok is False and "already paid or cancelled" in str(answer.error_message)
    # Choosing the card again works: a new invoice.
    replies = await h.press(CUSTOMER, method, "Card")
    assert any(m.invoice is not None for m in replies)
    assert (await env.payment())["status"] == "pending"


# -- one live message per screen (views/) ------------------------------------------------


async def _deliver_outbox(env: PayEnv) -> None:
    await _run_job(env, "outbox:deliver")


async def test_a_paid_invoice_loses_its_pay_and_cancel_buttons(env: PayEnv) -> None:
    h = env.harness
    [ask] = await h.say(CUSTOMER, "/topup")
    [method] = await h.say(CUSTOMER, "25")
    await h.press(CUSTOMER, method, "Crypto")
    invoice = h.emulator.message(CUSTOMER, method.message_id)
    labels = " ".join(t for t, _ in invoice.buttons)
    assert "💳 Pay" in labels and "Cancel invoice" in labels
    track = str((await env.payment())["provider_ref"])
    await env.oxapay.mark_paid(track)
    await _deliver_outbox(env)
    invoice = h.emulator.message(CUSTOMER, method.message_id)
    assert invoice.reply_markup is None and invoice.buttons == []
    assert "Invoice for $25.00: paid" in invoice.content
    credited = [m for m in h.emulator.sent_messages(CUSTOMER) if "Payment received" in m.content]
    assert len(credited) == 1 and credited[0].buttons == []  # not started from an order
    # Delivered again (a replayed callback), nothing more is edited or sent.
    await env.oxapay.mark_paid(track)
    await _deliver_outbox(env)
    # method choice → invoice → paid: two edits, none more.
    assert len(h.emulator.message(CUSTOMER, method.message_id).history) == 2


async def test_an_expired_or_cancelled_invoice_loses_its_buttons(env: PayEnv) -> None:
    h = env.harness
    track = await env.start_crypto_topup()
    first = h.last_message(CUSTOMER)
    # The pending invoice shown again by /topup carries the same buttons: both disarmed.
    [again] = await h.say(CUSTOMER, "/topup")
    assert "already have a pending top-up" in again.content and again.buttons
    await env.oxapay.mark_expired(track)
    await _deliver_outbox(env)
    for message_id in (first.message_id, again.message_id):
        message = h.emulator.message(CUSTOMER, message_id)
        assert message.buttons == [] and "expired, nothing charged" in message.content
    # A cancelled one (by /cancel, not by its own button) is disarmed the same way.
    await env.start_crypto_topup()
    second = h.last_message(CUSTOMER)
    await h.say(CUSTOMER, "/cancel")
    await _deliver_outbox(env)
    message = h.emulator.message(CUSTOMER, second.message_id)
    assert message.buttons == [] and "cancelled" in message.content


async def test_ready_amount_buttons_start_the_top_up(env: PayEnv) -> None:
    h = env.harness
    [ask] = await h.say(CUSTOMER, "/topup")
    assert [label for label, _ in ask.buttons][:3] == ["$10.00", "$25.00", "$50.00"]
    await h.press(CUSTOMER, ask, "$25.00")
    method = h.emulator.message(CUSTOMER, ask.message_id)  # the prompt became the choice
    assert "$25.00. How would you like to pay?" in method.content
    await h.press(CUSTOMER, method, "Crypto")
    invoice = h.emulator.message(CUSTOMER, ask.message_id)
    assert "Invoice for $25.00" in invoice.content
    assert (await env.payment())["amount_cents"] == 2500


async def test_a_typed_amount_takes_the_ready_amounts_off_the_prompt(env: PayEnv) -> None:
    h = env.harness
    [ask] = await h.say(CUSTOMER, "/topup")
    assert ask.buttons
    [method] = await h.say(CUSTOMER, "30")
    assert "$30.00" in method.content
    assert h.emulator.message(CUSTOMER, ask.message_id).buttons == []
    # A wrong amount keeps the prompt as it is: it is still the question.
    [again] = await h.say(CUSTOMER, "/topup")
    await h.say(CUSTOMER, "abc")
    assert h.emulator.message(CUSTOMER, again.message_id).buttons
