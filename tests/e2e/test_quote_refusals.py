"""The carrier's refusals of a quote reach the customer as the service names them
(``QuoteRefused``): the conversation never reads the provider's error codes."""

from __future__ import annotations

from tests.e2e.shop import RECIPIENT, SENDER, USER, ShopEnv


async def _to_parcel(shop: ShopEnv) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    await h.say(USER, SENDER)
    await h.say(USER, RECIPIENT)
    await h.say(USER, "2 lb")


async def test_an_address_the_carrier_refuses_is_named_and_the_draft_kept(
    shop: ShopEnv,
) -> None:
    await _to_parcel(shop)
    shop.carrier.inject_failure("get_rates", "invalid_address")
    replies = await shop.harness.say(USER, "10x8x4")
    assert "could not validate an address" in replies[-1].content
    assert shop.carrier.call_count("get_rates") == 1  # a refusal is not retried
    replies = await shop.harness.press(
        USER, replies[-1], data=replies[-1].callback_data_for("Recipient")
    )
    # The recipient is shown as it is, to change one field or enter it again.
    chooser = replies[-1]
    assert "Recipient now:" in chooser.content and "John Smith" in chooser.content
    replies = await shop.harness.press(
        USER, chooser, data=chooser.callback_data_for("Re-enter the whole address")
    )
    assert "Step 2 of 6" in replies[-1].content


async def test_another_refusal_is_no_rates(shop: ShopEnv) -> None:
    await _to_parcel(shop)
    shop.carrier.inject_failure("get_rates", "insufficient_funds")
    replies = await shop.harness.say(USER, "10x8x4")
    assert "No carrier offers a rate" in replies[-1].content
