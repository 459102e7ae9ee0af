"""Receipts end to end: the label's caption after a purchase, sent once however often the
label is delivered; again from My labels; cost, price and margin for admins."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from babel.dates import format_date

from sandbox.telegram import SentMessage
from services.receipts import short_order_id
from tests.conftest import OWNER_ID, FakeClock
from tests.e2e.shop import USER, ShopEnv, buy_label, pay_button

OTHER = 7002


def _services(shop: ShopEnv) -> Any:
    return shop.harness.application.bot_data.require_services()


def _receipts(shop: ShopEnv, order: dict[str, Any], since: int = 0) -> list[SentMessage]:
    """Messages in the customer's chat that carry this order's receipt."""
    title = f"Receipt · order {short_order_id(order['_id'])}"
    sent = shop.harness.emulator.sent_messages(USER, since=since)
    return [m for m in sent if title in m.content]


async def _order(shop: ShopEnv, order: dict[str, Any]) -> dict[str, Any]:
    doc = await shop.mongo.db["orders"].find_one({"_id": order["_id"]})
    assert doc is not None
    return dict(doc)


async def _deliver_job(shop: ShopEnv) -> None:
    app = shop.harness.application
    assert app.job_queue is not None
    [job] = app.job_queue.get_jobs_by_name("orders:deliver-labels")
    await job.run(app)


def _service_of(order: dict[str, Any]) -> str:
    rate = order["rate"]
    carrier, service = str(rate["carrier"]), str(rate["service"])
    return service if service.lower().startswith(carrier.lower()) else f"{carrier} {service}"


async def test_purchase_sends_one_message_the_label_with_its_receipt(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    mark = shop.harness.emulator.cursor(USER)
    await shop.harness.press(USER, summary, data=pay_button(summary))
    sent = shop.harness.emulator.sent_messages(USER, since=mark)
    order = dict(await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "purchased"}))
    # One message for the purchase: the PDF, captioned with the receipt (was two).
    assert [m.method for m in sent if m.method != "editMessageReplyMarkup"] == ["sendDocument"]
    [label] = _receipts(shop, order)
    assert label.method == "sendDocument" and label.document is not None
    text = label.content
    price = order["price_cents"]
    day = format_date(order["purchased_at"].date(), "long", locale="en")
    assert "Label bought" in text
    assert f"Service: {_service_of(order)}" in text
    assert f"Tracking number: {order['tracking_number']}" in text
    assert f"Total paid: ${price / 100:,.2f}" in text
    assert f"Purchased: {day}, " in text and " UTC" in text
    assert f"Balance after the purchase: ${(10_000 - price) / 100:,.2f}" in text
    assert "Refund possible" in text  # the refund window stays on the message
    assert "  " not in text
    assert label.callback_data_for("Save recipient") == f"tpl:save:{order['_id']}"
    assert (await _order(shop, order))["receipt_sent_at"] is not None


async def test_receipt_is_sent_once_when_delivery_is_retried(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await buy_label(shop)
    # The worker died after Telegram took the label, before it recorded the delivery.
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]}, {"$unset": {"label_delivered_at": ""}}
    )
    clock.advance(minutes=2)
    mark = shop.harness.emulator.cursor(USER)
    await _deliver_job(shop)
    await _deliver_job(shop)
    [again] = shop.harness.emulator.sent_messages(USER, since=mark)
    assert again.method == "sendDocument" and again.content == f"Label {order['tracking_number']}"
    assert len(_receipts(shop, order)) == 1
    assert (await _order(shop, order))["label_delivered_at"] is not None


async def test_receipt_follows_the_label_when_telegram_refused_it(
    shop: ShopEnv, clock: FakeClock
) -> None:
    """Telegram refuses the label after the purchase: the claim is given back and the
    delivery job's PDF carries the receipt, once."""
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    shop.harness.emulator.fail_next(
        "sendDocument", after=False, status=400, description="Bad Request: wrong file"
    )
    await shop.harness.press(USER, summary, data=pay_button(summary))
    order = dict(await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "purchased"}))
    assert _receipts(shop, order) == [] and "receipt_sent_at" not in order
    clock.advance(minutes=2)
    await _deliver_job(shop)
    await _deliver_job(shop)
    [label] = _receipts(shop, order)
    assert label.method == "sendDocument" and "Total paid" in label.content
    assert (await _order(shop, order))["label_delivered_at"] is not None


async def test_receipt_without_the_pdf_then_the_pdf_alone(
    shop: ShopEnv, clock: FakeClock
) -> None:
    """The PDF cannot be fetched right after the purchase: the receipt comes as text with
    the note, and the job's PDF later does not repeat it."""
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    shop.carrier.inject_failure("download", "error_500", times=5)
    await shop.harness.press(USER, summary, data=pay_button(summary))
    order = dict(await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "purchased"}))
    [text] = _receipts(shop, order)
    assert text.method == "sendMessage" and "could not be downloaded" in text.content
    assert text.callback_data_for("Save recipient") == f"tpl:save:{order['_id']}"
    shop.carrier.clear_failures()
    clock.advance(minutes=2)
    mark = shop.harness.emulator.cursor(USER)
    await _deliver_job(shop)
    [pdf] = shop.harness.emulator.sent_messages(USER, since=mark)
    assert pdf.method == "sendDocument" and pdf.content == f"Label {order['tracking_number']}"
    assert len(_receipts(shop, order)) == 1


async def test_recovered_purchase_gets_its_receipt_once(
    shop: ShopEnv, clock: FakeClock
) -> None:
    """A purchase whose outcome was unknown is completed by recovery; the delivery job
    sends the PDF with the receipt, and again only the PDF's delivery is retried."""
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    client = shop.harness.application.bot_data.extras["shipping"].client("test")
    client._purchase_timeout = 0.2  # noqa: SLF001 - make the timeout quick for the test
    shop.carrier.inject_failure("create_label", "slow", delay=1.0)
    await shop.harness.press(USER, summary, data=pay_button(summary))
    await asyncio.sleep(1.0)  # the fake finishes creating the label
    clock.advance(seconds=31)
    assert await _services(shop).purchase.recover_stuck() == {"completed": 1}
    order = dict(await shop.mongo.db["orders"].find_one({"user_id": USER}))
    assert order["status"] == "purchased"
    clock.advance(minutes=2)
    await _deliver_job(shop)
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]}, {"$unset": {"label_delivered_at": ""}}
    )
    await _deliver_job(shop)
    receipts = _receipts(shop, order)
    assert len(receipts) == 1 and receipts[0].method == "sendDocument"
    assert f"Total paid: ${order['price_cents'] / 100:,.2f}" in receipts[0].content
    assert "Balance after" not in receipts[0].content  # not known to the job
    await shop.audit_ok()


async def test_my_labels_resends_the_receipt_and_refuses_forged_ids(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h = shop.harness
    h.add_user(OTHER)
    await h.say(OTHER, "/start")
    await shop.fund(USER, 10_000)
    await shop.fund(OTHER, 10_000)
    order = await buy_label(shop)
    foreign = await buy_label(shop, OTHER)
    [labels] = await h.say(USER, "/labels")
    data = labels.callback_data_for("Receipt")
    assert data == f"lbl:rcp:{order['_id']}"
    [receipt] = await h.press(USER, labels, data=data)
    assert receipt.method == "sendMessage"
    assert f"Receipt · order {short_order_id(order['_id'])}" in receipt.content
    assert f"Service: {_service_of(order)}" in receipt.content
    assert f"Total paid: ${order['price_cents'] / 100:,.2f}" in receipt.content
    day = format_date(order["purchased_at"].date(), "long", locale="en")
    assert f"Purchased: {day}, " in receipt.content
    assert "Label bought" not in receipt.content and "  " not in receipt.content
    # Someone else's order and an id that does not exist: "not found", nothing sent.
    for forged in (f"lbl:rcp:{foreign['_id']}", "lbl:rcp:0123456789abcdef01234567"):
        stored = h.emulator.message(USER, labels.message_id)
        assert stored.reply_markup is not None
        stored.reply_markup["inline_keyboard"][0][0]["callback_data"] = forged
        assert await h.press(USER, stored, data=forged) == []
        answer = h.emulator.callback_answers[-1]
        assert answer.show_alert and answer.text == "Label not found."
    # In Russian the same receipt, translated.
    await shop.mongo.db["users"].update_one({"_id": USER}, {"$set": {"language": "ru"}})
    [labels] = await h.say(USER, "/labels")
    [ru] = await h.press(USER, labels, data=labels.callback_data_for("Чек"))
    assert "Чек · заказ" in ru.content and "Итого оплачено" in ru.content


async def test_admin_sees_cost_price_and_margin_per_order_and_in_stats(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h = shop.harness
    await shop.fund(USER, 50_000)
    orders = [await buy_label(shop) for _ in range(3)]
    # One of them is refunded: it leaves revenue, cost and margin.
    refunded = orders[0]
    await shop.mongo.db["orders"].update_one(
        {"_id": refunded["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=6)}}
    )
    refunds = _services(shop).refunds
    assert (await refunds.request_for_order(USER, str(refunded["_id"]))).verdict == "accepted"
    shop.carrier.set_void_outcome("approved")
    assert (await refunds.process_due()).get("credited") == 1
    [profile] = await h.say(OWNER_ID, f"/user {USER}")
    for order in orders:
        order = await _order(shop, order)
        price, cost = order["price_cents"], order["carrier_cost_cents"]
        assert cost > 0 and price > cost
        line = (
            f"price ${price / 100:,.2f} · cost ${cost / 100:,.2f}"
            f" · margin ${(price - cost) / 100:,.2f}"
        )
        assert line in profile.content
        assert short_order_id(order["_id"]) in profile.content
    kept = [await _order(shop, o) for o in orders[1:]]
    revenue = sum(o["price_cents"] for o in kept)
    cost = sum(o["carrier_cost_cents"] for o in kept)
    [stats] = await h.say(OWNER_ID, "/stats all")
    assert "Labels: 2 sold" in stats.content
    assert (
        f"Revenue ${revenue / 100:,.2f} · carrier cost ${cost / 100:,.2f}"
        f" · margin ${(revenue - cost) / 100:,.2f}"
    ) in stats.content
