"""Issue 17 item 6: what a customer met, each walked end to end through the emulator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sandbox.telegram import SentMessage
from services.parcel import parse_weight
from tests.conftest import FakeClock
from tests.e2e.shop import RECIPIENT, SENDER, USER, ShopEnv, buy_label, pay_button

GERMAN = "Hans Müller\nUnter den Linden 5\n10115 Berlin\nGermany"
GERMAN_NO_COUNTRY = "Hans Müller, Unter den Linden 5, 10115 Berlin"
UK = "John Smith\n10 Downing Street\nLondon SW1A 2AA"
UK_NAMED = "John Smith, 10 Downing Street, London, SW1A 2AA, United Kingdom"


def _labels(message: SentMessage) -> list[str]:
    return [text for text, _ in message.buttons]


async def _to_rates(shop: ShopEnv) -> SentMessage:
    h = shop.harness
    await h.say(USER, "/order")
    await h.say(USER, SENDER)
    await h.say(USER, RECIPIENT)
    await h.say(USER, "2 lb 4 oz")
    [rates] = await h.say(USER, "10x8x4")
    assert "Step 5 of 6" in rates.content
    return rates


async def test_rate_names_review_and_receipt_have_no_double_space(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    h = shop.harness
    rates = await _to_rates(shop)
    names = _labels(rates)
    assert any("USPS Ground Advantage" in name for name in names)  # the carrier said once
    assert not any("  " in name for name in names)
    replies = await h.press(USER, rates, data=rates.buttons[0][1])
    review = replies[-1]
    assert "Step 6 of 6" in review.content and "  " not in review.content
    assert "Service: " in review.content
    replies = await h.press(USER, review, data=pay_button(review))
    [receipt] = [m for m in replies if "Label bought" in m.content]
    assert "  " not in receipt.content and "Service: USPS Ground Advantage" in receipt.content


async def test_a_double_press_on_a_rate_shows_one_review(shop: ShopEnv) -> None:
    h = shop.harness
    emulator = h.emulator
    rates = await _to_rates(shop)
    data = rates.buttons[0][1]
    assert data is not None
    mark = emulator.cursor(USER)
    emulator.press_button(USER, rates.message_id, data)
    first = emulator.last_update_id
    emulator.press_button(USER, rates.message_id, data)
    second = emulator.last_update_id
    await h.wait_done(first)
    await h.wait_done(second)
    reviews = [m for m in emulator.sent_messages(USER, since=mark) if "Step 6 of 6" in m.content]
    assert len(reviews) == 1
    # "Change rate" and the same rate again on the new list: that is a new choice, reviewed.
    [again] = await h.press(USER, reviews[0], "✏️ Rate")
    replies = await h.press(USER, again, data=again.buttons[0][1])
    assert "Step 6 of 6" in replies[-1].content


async def test_start_mid_order_offers_to_continue_and_order_says_it_starts_over(
    shop: ShopEnv,
) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    await h.say(USER, SENDER)
    replies = await h.say(USER, "/start")
    note = replies[-1]
    assert "unfinished order" in note.content
    assert "▶️ Continue order" in _labels(note) and "🔄 Start over" in _labels(note)
    replies = await h.press(USER, note, "Continue order")
    assert "Step 2 of 6" in replies[-1].content  # the sender was kept
    replies = await h.say(USER, "/order")
    assert "discarded" in replies[0].content
    assert "Step 1 of 6" in replies[-1].content
    # Nothing typed into the new draft yet: /start has nothing to offer, /order says nothing.
    replies = await h.say(USER, "/start")
    assert not any("unfinished order" in m.content for m in replies)
    await h.say(USER, SENDER)
    replies = await h.say(USER, "/start")
    replies = await h.press(USER, replies[-1], "Start over")
    assert "discarded" in replies[0].content and "Step 1 of 6" in replies[-1].content


@pytest.mark.parametrize("address", [GERMAN, GERMAN_NO_COUNTRY, UK, UK_NAMED])
async def test_a_non_us_address_gets_us_only(shop: ShopEnv, address: str) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    replies = await h.say(USER, address)
    text = "\n".join(m.content for m in replies)
    assert "US addresses only for now" in text
    assert "state" not in replies[-1].content.lower()
    assert "Step 1 of 6" in replies[-1].content  # the sender is asked again, from the start


async def test_a_non_us_template_address_gets_us_only_and_nothing_else(shop: ShopEnv) -> None:
    h = shop.harness
    [empty] = await h.say(USER, "/templates")
    [ask] = await h.press(USER, empty, "New template")
    [refused] = await h.say(USER, GERMAN)
    assert "US addresses only for now" in refused.content
    assert "required" not in refused.content  # not seven "missing" fields besides


async def test_a_one_letter_street_and_a_digits_only_name_get_specific_messages(
    shop: ShopEnv,
) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    [name] = await h.say(USER, "12345")
    assert "A name needs letters" in name.content
    [street] = await h.say(USER, "Jane Doe")
    assert "street address" in street.content
    [short] = await h.say(USER, "A")
    assert "The street looks too short" in short.content
    [apartment] = await h.say(USER, "500 W 5th Ave")
    assert "apartment" in apartment.content


async def test_two_kg_is_converted_and_shown(shop: ShopEnv) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    await h.say(USER, SENDER)
    await h.say(USER, RECIPIENT)
    [dims] = await h.say(USER, "2 kg")
    # 2000 g = 70.55 oz, billed as 71 oz = 4 lb 7 oz; shown before the next question.
    assert "Weight: 4 lb 7 oz" in dims.content and "Step 4 of 6" in dims.content
    draft = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert draft is not None and draft["parcel"]["weight_oz"] == 71
    assert parse_weight("2 kgs") == parse_weight("2кг") == 71


async def test_my_labels_offers_refund_only_once_the_rules_accept(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await buy_label(shop)
    h = shop.harness
    [fresh] = await h.say(USER, "/labels")
    assert not any("Refund" in label for label in _labels(fresh))
    assert "Refund possible from" in fresh.content  # the first eligible day, and the last
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=6)}}
    )
    [aged] = await h.say(USER, "/labels")
    assert any("Refund" in label for label in _labels(aged))
    assert "Refund possible until" in aged.content


async def test_hello_is_not_a_tracking_number(shop: ShopEnv) -> None:
    h = shop.harness
    await h.say(USER, "/refund")
    [reply] = await h.say(USER, "hello")
    assert "hello: not a tracking number" in reply.content
    assert "not found" not in reply.content


async def test_refund_status_lists_the_requests_with_a_way_back(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    h = shop.harness
    [empty] = await h.say(USER, "/refund status")
    assert "no refund requests" in empty.content
    order = await buy_label(shop)
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=6)}}
    )
    await h.say(USER, "/refund")
    await h.say(USER, str(order["tracking_number"]))
    [status] = await h.say(USER, "/refund status")
    assert "My refunds" in status.content
    assert str(order["tracking_number"]) in status.content and "requested" in status.content
    assert "🏠 Menu" in _labels(status)
    # The conversation did not start: a number typed now is no request.
    replies = await h.say(USER, str(order["tracking_number"]))
    assert not any("already requested" in m.content for m in replies)


async def test_my_refunds_has_ways_back(shop: ShopEnv) -> None:
    h = shop.harness
    [mine] = await h.say(USER, "/myrefunds")
    labels = _labels(mine)
    assert "🏠 Menu" in labels and "📋 My labels" in labels
    replies = await h.press(USER, mine, "My labels")
    assert "no labels" in replies[-1].content.lower() or "My labels" in replies[-1].content


async def test_editing_a_part_from_the_review_shows_its_current_values(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    h = shop.harness
    summary = await shop.to_summary()
    [sender] = await h.press(USER, summary, "✏️ Sender")
    assert "Jane Doe" in sender.content and "500 W 5th Ave" in sender.content
    assert "✏️ Name" in _labels(sender) and any("Keep" in label for label in _labels(sender))
    replies = await h.press(USER, sender, "Keep")
    assert "Step 6 of 6" in replies[-1].content  # nothing changed: the review again
    [sender] = await h.press(USER, replies[-1], "✏️ Sender")
    [ask] = await h.press(USER, sender, "✏️ Name")
    assert "Step 1 of 6" in ask.content and "full name" in ask.content
    [rates] = await h.say(USER, "Janet Doe")  # only the name is asked; new quotes follow
    assert "Step 5 of 6" in rates.content
    replies = await h.press(USER, rates, data=rates.buttons[0][1])
    review = replies[-1]
    assert "Janet Doe" in review.content and "500 W 5th Ave" in review.content
    # The parcel: its weight and size shown, one changed.
    [parcel] = await h.press(USER, review, "✏️ Parcel")
    assert "2 lb 4 oz" in parcel.content and "10×8×4" in parcel.content
    [ask] = await h.press(USER, parcel, "✏️ Size")
    assert "Step 4 of 6" in ask.content
    [rates] = await h.say(USER, "12x10x6")
    replies = await h.press(USER, rates, data=rates.buttons[0][1])
    assert "2 lb 4 oz, 12×10×6" in replies[-1].content


async def test_after_a_purchase_there_is_a_way_on(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    h = shop.harness
    summary = await shop.to_summary()
    replies = await h.press(USER, summary, data=pay_button(summary))
    [receipt] = [m for m in replies if "Label bought" in m.content]
    labels = _labels(receipt)
    assert "🏠 Menu" in labels and "📦 Buy another" in labels and "📋 My labels" in labels
    assert any("Save recipient" in label for label in labels)
    replies = await h.press(USER, receipt, "Buy another")
    assert "Step 1 of 6" in replies[-1].content
