"""Insurance and delivery confirmation at the review, end to end (bot, fake ShipStation,
Bot API emulator): priced into the quote with the markup, shown, charged, sent."""

from __future__ import annotations

import pytest

from sandbox.shipstation import CONFIRMATION_CENTS, insurance_cents
from sandbox.telegram import SentMessage
from services.orders import OptionNotOffered
from services.pricing import PricingRules, customer_price_cents, extra_price_cents
from tests.e2e.shop import USER, ShopEnv, pay_button
from tests.e2e.test_bulk import BulkEnv, _upload_and_quote, env, sheet  # noqa: F401

RULES = PricingRules(markup_percent=15, markup_fixed_cents=50)  # type: ignore[arg-type]


async def _draft(shop: ShopEnv) -> dict:  # type: ignore[type-arg]
    draft = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert draft is not None
    return dict(draft)


async def _insure(shop: ShopEnv, review: SentMessage, value: str) -> list[SentMessage]:
    h = shop.harness
    [ask] = await h.press(USER, review, "🛡 Insure")
    assert "parcel's value" in ask.content and "$5,000.00" in ask.content
    return await h.say(USER, value)


async def test_insure_200_shows_and_charges_the_total(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    review = await shop.to_summary()  # the cheapest: USPS Ground Advantage
    plain = await _draft(shop)
    replies = await _insure(shop, review, "200")
    new = replies[-1]
    assert "Step 6 of 6" in new.content and "insured for $200.00" in new.content
    fee = insurance_cents("carrier", "stamps_com", 20_000)
    assert fee == 330  # two started $100 at $1.65
    price = extra_price_cents(fee, RULES)  # 330 + 15 % = 379.5 -> 380
    assert "Insurance ($200.00 declared): $3.80" in new.content and price == 380
    draft = await _draft(shop)
    assert draft["insured_value_cents"] == 20_000
    assert draft["insurance_price_cents"] == price
    assert draft["price_cents"] == plain["price_cents"] + price
    assert draft["carrier_cost_cents"] == plain["carrier_cost_cents"] + fee
    assert draft["rate"]["service_code"] == plain["rate"]["service_code"]  # same service
    assert pay_button(new).endswith(f":{draft['price_cents']}")
    assert f"Pay ${draft['price_cents'] // 100}.{draft['price_cents'] % 100:02d}" in str(
        new.buttons
    )
    # The quote asked the carrier for insurance as ShipStation v2 spells it.
    shipment = shop.carrier.shipments()[-1]
    assert shipment["insured_value_cents"] == 20_000
    assert shipment["insurance_provider"] == "carrier"
    assert shipment["confirmation"] == "none"
    replies = await shop.harness.press(USER, new, data=pay_button(new))
    [receipt] = [m for m in replies if "Label bought" in m.content]
    # The receipt (the label's caption) names the insurance it was charged for.
    assert "$200.00" in receipt.content and "$3.80" in receipt.content
    order = await shop.mongo.db["orders"].find_one({"_id": draft["_id"]})
    assert order is not None and order["status"] == "purchased"
    [debit] = await shop.mongo.db["ledger"].find({"kind": "label"}).to_list(None)
    assert debit["amount_cents"] == -order["price_cents"] == -draft["price_cents"]
    assert await shop.balance() == 10_000 - draft["price_cents"]
    [label] = shop.carrier.labels.values()
    assert label.insurance_cents == fee
    # The carrier's cost of the label includes insurance (shipment_cost + insurance_cost).
    assert order["carrier_cost_cents"] == label.cost_cents + label.insurance_cents
    assert order["carrier_cost_cents"] == draft["carrier_cost_cents"]
    assert order["insured_value_cents"] == 20_000
    assert order["insurance_price_cents"] == price
    assert order["confirmation"] == "none" and order["confirmation_price_cents"] == 0
    await shop.audit_ok()


async def test_signature_is_offered_where_the_service_has_it_and_sent(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    h = shop.harness
    review = await shop.to_summary()  # USPS Ground Advantage: signature, no adult signature
    [menu] = await h.press(USER, review, "✍️ Signature")
    assert "Delivery confirmation" in menu.content
    fee = CONFIRMATION_CENTS["usps_ground_advantage"]["signature"]
    price = extra_price_cents(fee, RULES)
    labels = [text for text, _ in menu.buttons]
    assert any(text.startswith("✍️ Signature +$5.12") for text in labels) and price == 512
    assert not any("Adult" in text for text in labels)  # not offered by this service
    replies = await h.press(USER, menu, "✍️ Signature +")
    new = replies[-1]
    assert "Signature confirmation added" in new.content
    assert "✍️ Signature: $5.12" in new.content
    draft = await _draft(shop)
    assert draft["confirmation"] == "signature" and draft["confirmation_price_cents"] == price
    # An adult signature for this service is refused and changes nothing.
    services = h.application.bot_data.require_services()
    with pytest.raises(OptionNotOffered):
        await services.orders.set_options(draft, confirmation="adult_signature")
    assert (await _draft(shop))["offer_id"] == draft["offer_id"]
    replies = await h.press(USER, new, data=pay_button(new))
    assert any("Label bought" in m.content for m in replies)
    [label] = shop.carrier.labels.values()
    assert label.confirmation == "signature"
    [bought] = [s for s in shop.carrier.shipments() if s["shipment_id"] == label.shipment_id]
    assert bought["confirmation"] == "signature"
    order = await shop.mongo.db["orders"].find_one({"_id": draft["_id"]})
    assert order is not None and order["confirmation"] == "signature"
    assert order["confirmation_price_cents"] == price
    assert order["carrier_cost_cents"] == label.cost_cents  # shipment_cost has the fee
    await shop.audit_ok()


async def test_adult_signature_on_a_service_that_offers_it(shop: ShopEnv) -> None:
    await shop.fund(USER, 20_000)
    h = shop.harness
    review = await shop.to_summary()
    [rates] = await h.press(USER, review, "✏️ Rate")
    priority = next(data for text, data in rates.buttons if "Priority" in text)
    [review] = (await h.press(USER, rates, data=priority))[-1:]
    [menu] = await h.press(USER, review, "✍️ Signature")
    adult = extra_price_cents(CONFIRMATION_CENTS["usps_priority_mail"]["adult_signature"], RULES)
    assert any(f"Adult signature +${adult // 100}.{adult % 100:02d}" in t for t, _ in menu.buttons)
    replies = await h.press(USER, menu, "Adult signature")
    assert "🔞 Adult signature:" in replies[-1].content
    draft = await _draft(shop)
    assert draft["confirmation"] == "adult_signature"
    # Removing it again brings back the plain price.
    [menu] = await h.press(USER, replies[-1], "✍️ Signature")
    replies = await h.press(USER, menu, "No signature")
    assert "Adult signature" not in replies[-1].content
    plain = await _draft(shop)
    assert plain["confirmation"] == "none" and plain["confirmation_price_cents"] == 0
    assert plain["price_cents"] == draft["price_cents"] - adult


@pytest.mark.parametrize(
    ("typed", "answer"),
    [
        ("abc", "That is not an amount"),
        ("-5", "must be positive"),
        ("$1e9", "That is not an amount"),
        ("0", "smallest value to insure is $1.00"),
        ("6000", "insure up to $5,000.00"),
        ("12.345", "at most 2 decimal places"),
    ],
)
async def test_a_bad_declared_value_gets_a_clear_reply(
    shop: ShopEnv, typed: str, answer: str
) -> None:
    review = await shop.to_summary()
    before = await _draft(shop)
    [reply] = await _insure(shop, review, typed)
    assert answer in reply.content
    after = await _draft(shop)
    assert after["offer_id"] == before["offer_id"] and not after.get("insured_value_cents")
    # Still asked: a good value now insures.
    replies = await shop.harness.say(USER, "150.50")
    assert "Insurance ($150.50 declared)" in replies[-1].content


async def test_an_old_pay_button_from_before_insurance_buys_nothing(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    h = shop.harness
    emulator = h.emulator
    review = await shop.to_summary()
    old_pay = pay_button(review)
    [ask] = await h.press(USER, review, "🛡 Insure")
    mark = emulator.cursor(USER)
    # The declared value, and a tap on the old Pay before the new review arrives.
    emulator.send_message(USER, "200")
    insured = emulator.last_update_id
    emulator.press_button(USER, review.message_id, old_pay)
    stale = emulator.last_update_id
    await h.wait_done(insured)
    await h.wait_done(stale)
    reviews = [m for m in emulator.sent_messages(USER, since=mark) if "Step 6 of 6" in m.content]
    assert len(reviews) == 2
    assert "nothing was charged" in reviews[-1].content
    assert "Insurance ($200.00 declared)" in reviews[-1].content
    assert await shop.balance() == 10_000
    assert await shop.mongo.db["ledger"].count_documents({"kind": "label"}) == 0
    assert shop.carrier.call_count("create_label") == 0
    draft = await _draft(shop)
    assert pay_button(reviews[-1]) != old_pay
    assert pay_button(reviews[-1]).endswith(f":{draft['price_cents']}")
    # Removing the insurance re-prices too, and the insured review's Pay is stale then.
    insured_pay = pay_button(reviews[-1])
    [ask] = await h.press(USER, reviews[-1], "🛡 Insure")
    replies = await h.press(USER, ask, "No insurance")
    assert "Insurance removed" in replies[-1].content
    assert "declared" not in replies[-1].content
    assert (await _draft(shop))["price_cents"] < draft["price_cents"]
    assert pay_button(replies[-1]) != insured_pay
    await shop.audit_ok()


async def test_a_carrier_outage_while_insuring_changes_nothing(shop: ShopEnv) -> None:
    review = await shop.to_summary()
    old_pay = pay_button(review)
    before = await _draft(shop)
    shop.carrier.inject_failure("get_rates", "error_500", times=5)
    replies = await _insure(shop, review, "200")
    assert "temporarily unavailable" in replies[-1].content
    assert "Step 6 of 6" in replies[-1].content  # the unchanged review, still payable
    after = await _draft(shop)
    assert after["offer_id"] == before["offer_id"] and not after.get("insured_value_cents")
    assert pay_button(replies[-1]) == old_pay  # the same offer and price still buys


async def test_bulk_quotes_carry_no_insurance_or_confirmation(env: BulkEnv) -> None:  # noqa: F811
    _, quote = await _upload_and_quote(env, sheet(3, []))
    assert "3 labels" in quote.content
    shipments = env.carrier.shipments()
    assert shipments and all(
        s["insured_value_cents"] == 0
        and s["confirmation"] == "none"
        and s["insurance_provider"] == "none"
        for s in shipments
    )
    rows = [o async for o in env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})]
    for row in rows:
        assert row["insurance_price_cents"] == 0 and row["confirmation_price_cents"] == 0
        assert row["price_cents"] == customer_price_cents(row["rate"]["cost_cents"], RULES)
