"""Buying labels end to end: the bot, the fake ShipStation and the Bot API emulator."""

from __future__ import annotations

import asyncio
from collections import Counter

from sandbox.telegram import SentMessage
from tests.conftest import FakeClock
from tests.e2e.shop import RECIPIENT, SENDER, USER, ShopEnv, pay_button


async def test_double_pay_debits_once(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    data = pay_button(summary)
    emulator = shop.harness.emulator
    ids = []
    for _ in range(2):
        emulator.press_button(USER, summary.message_id, data)
        ids.append(emulator.last_update_id)
    for update_id in ids:
        await shop.harness.wait_done(update_id)
    orders = (
        await shop.mongo.db["orders"].find({"user_id": USER, "status": "purchased"}).to_list(None)
    )
    assert len(orders) == 1
    debits = await shop.mongo.db["ledger"].find({"user_id": USER, "kind": "label"}).to_list(None)
    assert len(debits) == 1
    assert shop.carrier.call_count("create_label") == 1
    assert any("already paid" in (a.text or "") for a in emulator.callback_answers)
    await shop.audit_ok()


async def test_edit_recipient_from_summary_returns_to_summary(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    h = shop.harness
    [choose] = await h.press(USER, summary, data=summary.callback_data_for("Recipient"))
    replies = await h.press(USER, choose, "Re-enter the whole address")
    assert "Step 2 of 6" in replies[-1].content
    replies = await h.say(USER, "Mary Major, 1600 Pennsylvania Ave NW, Washington, DC 20500")
    rates = replies[-1]
    assert "Step 5 of 6" in rates.content  # parcel kept, new quotes for the new address
    replies = await h.press(USER, rates, data=rates.buttons[0][1])
    assert "Mary Major" in replies[-1].content and "Step 6 of 6" in replies[-1].content


async def test_insufficient_balance_topup_and_back(shop: ShopEnv) -> None:
    summary = await shop.to_summary()
    h = shop.harness
    replies = await h.press(USER, summary, data=pay_button(summary))
    short = replies[-1]
    assert "Top up at least" in short.content
    assert await shop.balance() == 0
    replies = await h.press(USER, short, "Top up")
    terms = replies[-1]
    assert "Before your first top-up" in terms.content  # accepted once, then the amount
    replies = await h.press(USER, terms, "I accept")
    assert "step 1 of 2" in replies[-1].content
    session = await shop.mongo.db["sessions"].find_one({"_id": f"{USER}:{USER}"})
    assert session is not None and session["data"]["topup"]["return_to"] == "order"
    await shop.fund(USER, 5_000, key="late")  # the payment arrives
    replies = await h.press(USER, short, "Back to my order")
    review = replies[-1]
    assert "Step 6 of 6" in review.content
    replies = await h.press(USER, review, data=pay_button(review))
    assert any("Label bought" in m.content for m in replies)
    await shop.audit_ok()


async def test_carrier_failure_is_compensated(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    shop.carrier.inject_failure("create_label", "insufficient_funds")
    replies = await shop.harness.press(USER, summary, data=pay_button(summary))
    assert any("back on your balance" in m.content for m in replies)
    assert await shop.balance() == 10_000
    order = await shop.mongo.db["orders"].find_one({"user_id": USER})
    assert order is not None and order["status"] == "failed"
    kinds = sorted(
        e["kind"] for e in await shop.mongo.db["ledger"].find({"user_id": USER}).to_list(None)
    )
    assert kinds == ["compensation", "label", "topup"]
    alerts = await shop.mongo.db["outbox"].find({"kind": "admin_alert"}).to_list(None)
    assert any("Compensation" in a["text"] for a in alerts)
    await shop.audit_ok()


async def test_crash_in_purchasing_is_resolved_by_recovery(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    # The carrier answers too slowly: the outcome is unknown, the label was bought.
    services = shop.harness.application.bot_data.require_services()
    client = shop.harness.application.bot_data.extras["shipping"].client("test")
    client._purchase_timeout = 0.2  # noqa: SLF001 - make the timeout quick for the test
    shop.carrier.inject_failure("create_label", "slow", delay=1.0)
    replies = await shop.harness.press(USER, summary, data=pay_button(summary))
    assert any("has not confirmed" in m.content for m in replies)
    order = await shop.mongo.db["orders"].find_one({"user_id": USER})
    assert order is not None and order["status"] == "purchasing"
    await asyncio.sleep(1.0)  # the fake finishes creating the label
    clock.advance(seconds=31)
    counts = await services.purchase.recover_stuck()
    assert counts == {"completed": 1}
    order = await shop.mongo.db["orders"].find_one({"user_id": USER})
    assert order is not None and order["status"] == "purchased" and order["tracking_number"]
    await shop.audit_ok()


async def test_crash_before_label_is_compensated_by_recovery(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    await shop.to_summary()
    storage = shop.harness.application.bot_data.require_storage()
    order = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert order is not None
    # Simulate a crash right after the debit: purchasing, debited, no carrier call.
    await storage.orders.transition(
        order["_id"],
        from_status="draft",
        to_status="purchasing",
        now=clock(),
        fields={"purchase_started_at": clock()},
    )
    await storage.ledger.apply(
        user_id=USER,
        amount_cents=-order["price_cents"],
        kind="label",
        key=f"label:{order['_id']}",
        now=clock(),
    )
    clock.advance(seconds=31)
    services = shop.harness.application.bot_data.require_services()
    assert await services.purchase.recover_stuck() == {"compensated": 1}
    assert await shop.balance() == 10_000
    await shop.audit_ok()


async def test_carrier_down_keeps_draft(shop: ShopEnv) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    await h.say(USER, SENDER)
    await h.say(USER, RECIPIENT)
    await h.say(USER, "2 lb")
    shop.carrier.inject_failure("get_rates", "error_500", times=3)  # every retry fails
    replies = await h.say(USER, "10x8x4")
    assert "temporarily unavailable" in replies[-1].content
    replies = await h.press(USER, replies[-1], "Try again")
    assert "Step 5 of 6" in replies[-1].content


async def test_hostile_input_gets_clear_answers(shop: ShopEnv) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    for text in ["<b>bold</b>", "x" * 5000, "😀😀", "\u202eevil", "Robert'); DROP TABLE--"]:
        replies = await h.say(USER, text)
        assert replies, text
    replies = await h.say(USER, "Jane Doe")
    assert "Step 1 of 6" in replies[-1].content and "street" in replies[-1].content


def _name(uid: int) -> str:
    return "Customer " + "".join(chr(ord("a") + int(d)) for d in str(uid)).title()


async def test_concurrent_customers_get_their_own_labels(shop: ShopEnv) -> None:
    users = list(range(8000, 8020))
    for uid in users:
        shop.harness.add_user(uid)
    await asyncio.gather(*(shop.harness.say(uid, "/start") for uid in users))
    for uid in users:
        await shop.fund(uid, 10_000)

    async def customer(uid: int) -> None:
        h = shop.harness
        await h.say(uid, "/order")
        await h.say(uid, f"{_name(uid)}, 1 Main St, Albany, NY 12207, (518) 555-0142")
        await h.say(uid, RECIPIENT)
        await h.say(uid, "1 lb")
        [rates] = await h.say(uid, "6x6x6")
        replies = await h.press(uid, rates, data=rates.buttons[0][1])
        summary = replies[-1]
        replies = await h.press(uid, summary, data=pay_button(summary))
        assert any(m.document is not None for m in replies)

    await asyncio.gather(*(customer(uid) for uid in users))
    for uid in users:
        msgs = shop.harness.emulator.sent_messages(uid)
        assert all(m.chat_id == uid for m in msgs)
        others = [_name(other) for other in users if other != uid]
        assert not any(name in m.content for m in msgs for name in others)
        orders = (
            await shop.mongo.db["orders"]
            .find({"user_id": uid, "status": "purchased"})
            .to_list(None)
        )
        assert len(orders) == 1
    await shop.audit_ok()


async def test_carrier_outage_opens_circuit_alerts_once_and_recovers(
    shop: ShopEnv, clock: FakeClock
) -> None:
    """Carrier down → circuit opens, customers get the friendly message at once, admins one
    alert; carrier back → the circuit closes and the draft continues where it was."""
    h = shop.harness
    client = h.application.bot_data.extras["shipping"].client("test")
    breaker = client.breaker
    await h.say(USER, "/order")
    await h.say(USER, SENDER)
    await h.say(USER, RECIPIENT)
    await h.say(USER, "2 lb")
    shop.carrier.inject_failure("*", "error_500", times=1000)
    replies = await h.say(USER, "10x8x4")  # 3 attempts fail
    assert "temporarily unavailable" in replies[-1].content
    retry = replies[-1]
    for _ in range(3):  # more failures open the circuit; then it answers without calling
        replies = await h.press(USER, retry, "Try again")
        retry = replies[-1]
        assert "temporarily unavailable" in retry.content
    assert str(breaker.state).lower().endswith("open")
    calls = shop.carrier.call_count("get_rates")
    replies = await h.press(USER, retry, "Try again")
    assert "temporarily unavailable" in replies[-1].content
    assert shop.carrier.call_count("get_rates") == calls  # failed fast, no HTTP
    shop.carrier.clear_failures()
    breaker_clock = getattr(breaker, "_clock", None)
    assert breaker_clock is not None
    breaker._opened_at = breaker_clock() - 3600  # noqa: SLF001 - the cooldown has passed
    replies = await h.press(USER, replies[-1], "Try again")
    assert "Step 5 of 6" in replies[-1].content
    alerts = await shop.mongo.db["outbox"].find({"text": {"$regex": "circuit"}}).to_list(None)
    texts = {a["text"] for a in alerts}
    assert any("open" in t for t in texts) and any("closed" in t for t in texts)
    per_admin = Counter(a["chat_id"] for a in alerts if "→ open" in a["text"])
    assert per_admin and all(n == 1 for n in per_admin.values())


def _shows_pay(message: SentMessage) -> bool:
    return any(data and data.startswith("order:pay:") for _, data in message.buttons)


async def test_an_older_review_cannot_buy_what_a_newer_one_shows(shop: ShopEnv) -> None:
    """Review A shows "Pay $X"; the customer changes the rate and review B shows $Y; the old
    "Pay $X" tapped before B arrived buys nothing and shows the current review again, and
    only the newest review keeps a Pay button."""
    await shop.fund(USER, 10_000)
    h = shop.harness
    emulator = h.emulator
    first = await shop.to_summary()  # the cheapest rate
    old_pay = pay_button(first)
    [rates] = await h.press(USER, first, "✏️ Rate")
    assert _shows_pay(first)  # the rate list alone does not disarm the review
    dearest = [data for _, data in rates.buttons if data and data.startswith("order:rate:")][-1]
    mark = emulator.cursor(USER)
    # The new choice, and a tap on the old Pay before the new review arrives.
    emulator.press_button(USER, rates.message_id, dearest)
    choose = emulator.last_update_id
    emulator.press_button(USER, first.message_id, old_pay)
    stale = emulator.last_update_id
    await h.wait_done(choose)
    await h.wait_done(stale)
    reviews = [m for m in emulator.sent_messages(USER, since=mark) if "Step 6 of 6" in m.content]
    assert len(reviews) == 2  # review B, then B shown again for the stale tap
    newer, again = reviews
    assert "nothing was charged" in again.content
    draft = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert draft is not None and draft["price_cents"] > int(old_pay.rsplit(":", 1)[1])
    assert pay_button(again).endswith(f":{draft['price_cents']}")
    # Nothing charged, nothing bought.
    assert await shop.balance() == 10_000
    assert await shop.mongo.db["ledger"].count_documents({"kind": "label"}) == 0
    assert shop.carrier.call_count("create_label") == 0
    # Only the newest review keeps a Pay button; the older ones were edited.
    assert first.edited and not _shows_pay(first)
    assert newer.edited and not _shows_pay(newer)
    assert _shows_pay(again)
    # The live button buys exactly what it shows.
    replies = await h.press(USER, again, data=pay_button(again))
    assert any("Label bought" in m.content for m in replies)
    assert await shop.balance() == 10_000 - draft["price_cents"]
    [label] = shop.carrier.labels.values()
    assert label.rate_id == draft["rate"]["rate_id"]
    await shop.audit_ok()


async def test_back_to_the_review_disarms_the_previous_one(shop: ShopEnv) -> None:
    """Showing the same review again ("Back to my order") leaves one Pay button: the new
    one, for the same offer and price."""
    h = shop.harness
    first = await shop.to_summary()
    old_pay = pay_button(first)
    replies = await h.press(USER, first, data=old_pay)
    short = replies[-1]
    assert "Top up at least" in short.content
    replies = await h.press(USER, short, "Back to my order")
    review = replies[-1]
    assert not _shows_pay(first) and _shows_pay(review)
    assert pay_button(review) == old_pay  # same offer, same price: the button still buys
    assert await shop.balance() == 0


async def test_requotes_use_their_own_shipment_ids(shop: ShopEnv, clock: FakeClock) -> None:
    """Every quote is a new ShipStation shipment with its own external_shipment_id: an
    edit after the first quote and the refresh of a stale quote before Pay both work."""
    await shop.fund(USER, 10_000)
    h = shop.harness
    summary = await shop.to_summary()
    [choose] = await h.press(USER, summary, "✏️ Parcel")
    replies = await h.press(USER, choose, "✏️ Weight")
    assert "Step 3 of 6" in replies[-1].content
    [rates] = await h.say(USER, "3 lb")  # the size is kept
    assert "Step 5 of 6" in rates.content  # re-quoted after the edit
    replies = await h.press(USER, rates, data=rates.buttons[0][1])
    review = replies[-1]
    clock.advance(minutes=16)  # the quote is stale: Pay refreshes it first
    replies = await h.press(USER, review, data=pay_button(review))
    assert any("Label bought" in m.content for m in replies)
    shipments = shop.carrier.shipments()
    ids = [sh["external_shipment_id"] for sh in shipments]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(i and len(i) <= 50 for i in ids)
    assert not any(c.status == 400 for c in shop.carrier.calls)
    order = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "purchased"})
    assert order is not None
    [label] = shop.carrier.labels.values()
    # The label was bought from the refreshed quote, the last shipment.
    assert label.rate_id == order["rate"]["rate_id"]
    assert label.shipment_id == shipments[-1]["shipment_id"] == order["rate"]["shipment_id"]
    await shop.audit_ok()


async def test_recipient_without_phone_ships_with_the_senders(shop: ShopEnv) -> None:
    """ShipStation requires a phone on both addresses: the sender's is asked for (no
    Skip), a recipient's may be skipped and the shipment then carries the sender's."""
    h = shop.harness
    await h.say(USER, "/order")
    replies = await h.say(USER, "Jane Doe, 500 W 5th Ave, New York, NY 10001")
    ask = replies[-1]
    assert "Sender — phone number" in ask.content
    assert not any("Skip" in text for text, _ in ask.buttons)
    [refused] = await h.say(USER, "skip")
    assert "needs the sender's phone" in refused.content
    replies = await h.say(USER, "(212) 555-0123")
    assert "Step 2 of 6" in replies[-1].content
    replies = await h.say(USER, "John Smith, 123 Main St, Springfield, IL 62704")
    assert "Step 3 of 6" in replies[-1].content  # the recipient's phone counts as skipped
    await h.say(USER, "2 lb")
    await h.say(USER, "10x8x4")
    [shipment] = shop.carrier.shipments()
    assert shipment["ship_from"]["phone"] == "+12125550123"
    assert shipment["ship_to"]["phone"] == "+12125550123"
    assert shipment["ship_to"]["name"] == "John Smith"


async def test_address_validation_can_be_turned_off(shop: ShopEnv) -> None:
    """``shipping.validate_addresses: false`` (the tests' default): no check, no question,
    quotes with an unknown residential indicator and no cleaning."""
    await shop.to_summary()
    assert shop.carrier.call_count("validate_addresses") == 0
    shipment = shop.carrier.shipments()[-1]
    assert shipment["validate_address"] == "no_validation"
    assert shipment["ship_to"]["address_residential_indicator"] == "unknown"


async def test_top_up_from_an_order_offers_the_way_back_and_the_needed_amount(
    shop: ShopEnv,
) -> None:
    """Short of $8.33 with a $10 minimum: the reply asks for the minimum, the amount prompt
    offers it as a button, the paid card top-up's confirmation leads back to the review."""
    h = shop.harness
    await shop.fund(USER, 200)
    summary = await shop.to_summary()
    replies = await h.press(USER, summary, data=pay_button(summary))
    short = replies[-1]
    assert "$10.33" in short.content  # the price; the shortfall is $8.33
    assert "Top up at least $10.00" in short.content  # not the shortfall below the minimum
    replies = await h.press(USER, short, "Top up")
    replies = await h.press(USER, replies[-1], "I accept")
    ask = replies[-1]
    assert "step 1 of 2" in ask.content
    assert [label for label, _ in ask.buttons][:3] == ["$10.00", "$25.00", "$50.00"]
    await h.press(USER, ask, "$10.00")
    method = h.emulator.message(USER, ask.message_id)
    assert "$10.00. How would you like to pay?" in method.content
    replies = await h.press(USER, method, "Card")
    invoice = next(m for m in replies if m.invoice is not None)
    sent = next(m for m in replies if "Pay the invoice above by card" in m.content)
    assert "Back to my order" in " ".join(label for label, _ in sent.buttons)
    query_id = h.emulator.checkout(USER, invoice.message_id)
    await h.wait_done(h.emulator.last_update_id)
    await h.wait_done(h.emulator.complete_checkout(query_id))
    assert await shop.balance() == 1_200
    queue = h.application.job_queue
    assert queue is not None
    [job] = queue.get_jobs_by_name("outbox:deliver")
    await job.run(h.application)
    [credited] = [m for m in h.emulator.sent_messages(USER) if "Payment received" in m.content]
    assert [label for label, _ in credited.buttons] == ["↩️ Back to my order"]
    # The message under the invoice is settled too: its text says so, no buttons left.
    settled = h.emulator.message(USER, sent.message_id)
    assert settled.buttons == [] and "paid" in settled.content
    replies = await h.press(USER, credited, "Back to my order")
    review = replies[-1]
    assert "Step 6 of 6" in review.content
    replies = await h.press(USER, review, data=pay_button(review))
    assert any("Label bought" in m.content for m in replies)
    await shop.audit_ok()
