"""Address validation ("did you mean") end to end: the Telegram emulator, the real
application and the fake ShipStation's POST /v2/addresses/validate."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import Secrets
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import SentMessage
from storage.client import Mongo
from tests.conftest import OWNER_ID, FakeClock, make_settings
from tests.e2e.shop import ShopEnv, pay_button

EN, RU, UK = 7101, 7102, 7103
# ZIP+4 as the carrier has it, a suite: verified as typed, commercial.
SENDER = "Jane Doe\n500 W 5th Ave Suite 200\nNew York, NY 10001-2062\n(212) 555-0123"
# "Street" and a ZIP5: the carrier corrects both; residential.
RECIPIENT = "John Smith, 123 Main Street Apt 4, Springfield, IL 62704"
UNKNOWN = "John Smith, 1 Unknown Road, Springfield, IL 62704"


@pytest.fixture
async def shop(mongo: Mongo, clock: FakeClock) -> AsyncIterator[ShopEnv]:
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    base = make_settings()
    shipping = base.shipping.model_copy(
        update={
            "base_url": carrier.base_url,
            "purchase_timeout_seconds": 10,
            "recovery_after_seconds": 30,
            "validate_addresses": True,
            "validation_timeout_seconds": 0.2,
            "max_attempts": 1,  # a 429 or an outage is not waited out in a test
        }
    )
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        shipstation_test_api_key=SecretStr("TEST_sandbox_key"),
    )
    harness = BotHarness(
        make_settings(shipping=shipping, secrets=secrets),
        mongo=mongo,
        clock=clock,
        rate_limits=False,
    )
    await harness.start()
    harness.add_user(EN, first_name="Buyer", language_code="en")
    harness.add_user(RU, first_name="Покупатель", language_code="ru")
    harness.add_user(UK, first_name="Покупець", language_code="uk")
    harness.add_user(OWNER_ID)
    for user in (EN, RU, UK):
        await harness.say(user, "/start")
    try:
        yield ShopEnv(harness, carrier, mongo)
    finally:
        await harness.close()
        await carrier.stop()


async def draft(env: ShopEnv, user: int = EN) -> dict[str, Any]:
    doc = await env.mongo.db["orders"].find_one({"user_id": user, "status": "draft"})
    assert doc is not None
    return dict(doc)


async def to_recipient_check(
    env: ShopEnv, user: int = EN, recipient: str = RECIPIENT
) -> SentMessage:
    """/order, the sender (verified, no question), the recipient: the carrier's answer."""
    h = env.harness
    await h.say(user, "/order")
    replies = await h.say(user, SENDER)
    assert "2" in replies[-1].content and len(replies[-1].buttons) >= 1
    replies = await h.say(user, recipient)
    return replies[-1]


async def finish_parcel(env: ShopEnv, user: int = EN) -> SentMessage:
    h = env.harness
    [dims] = await h.say(user, "2 lb 4 oz")
    assert "Step 4 of 6" in dims.content
    [rates] = await h.say(user, "10x8x4")
    assert "Step 5 of 6" in rates.content
    replies = await h.press(user, rates, data=rates.buttons[0][1])
    assert "Step 6 of 6" in replies[-1].content
    return replies[-1]


async def test_use_this_corrects_the_address_and_buys_with_validate_and_clean(
    shop: ShopEnv,
) -> None:
    check = await to_recipient_check(shop)
    assert "corrected form" in check.content
    assert "123 Main St" in check.content and re.search(r"62704-\d{4}", check.content)
    assert "123 Main Street" in check.content  # what was typed, for comparison
    labels = [text for text, _ in check.buttons]
    assert any("Use this" in t for t in labels) and any("Keep mine" in t for t in labels)
    assert any("Edit" in t for t in labels)
    assert all(len((data or "").encode()) <= 64 for _, data in check.buttons)
    # The sender was verified as typed: its residential indicator came from the check.
    doc = await draft(shop)
    assert doc["from_validation"]["status"] == "verified"
    assert doc["from_validation"]["residential"] is False

    replies = await shop.harness.press(EN, check, "Use this")
    assert "Step 3 of 6" in replies[-1].content
    doc = await draft(shop)
    assert doc["to_address"]["street1"] == "123 Main St"
    assert re.fullmatch(r"62704-\d{4}", doc["to_address"]["postal_code"])
    assert doc["to_address"]["street2"] == "Apt 4"
    summary = await finish_parcel(shop)
    assert "123 Main St" in summary.content
    shipment = shop.carrier.shipments()[-1]
    assert shipment["validate_address"] == "validate_and_clean"
    assert shipment["ship_to"]["address_line1"] == "123 Main St"
    assert shipment["ship_to"]["address_residential_indicator"] == "yes"
    assert shipment["ship_from"]["address_residential_indicator"] == "no"

    await shop.fund(EN, 10_000)
    replies = await shop.harness.press(EN, summary, data=pay_button(summary))
    assert any(m.document is not None for m in replies)
    [label] = shop.carrier.labels.values()
    assert label.validate_address == "validate_and_clean"
    assert label.ship_to["address_residential_indicator"] == "yes"
    await shop.audit_ok()


async def test_keep_mine_buys_the_typed_address_without_cleaning(shop: ShopEnv) -> None:
    check = await to_recipient_check(shop)
    replies = await shop.harness.press(EN, check, "Keep mine")
    assert "Step 3 of 6" in replies[-1].content
    doc = await draft(shop)
    assert doc["to_address"]["street1"] == "123 Main Street"
    assert doc["to_address"]["postal_code"] == "62704"
    summary = await finish_parcel(shop)
    shipment = shop.carrier.shipments()[-1]
    assert shipment["validate_address"] == "no_validation"
    assert shipment["ship_to"]["address_line1"] == "123 Main Street"
    assert shipment["ship_to"]["address_residential_indicator"] == "yes"
    await shop.fund(EN, 10_000)
    await shop.harness.press(EN, summary, data=pay_button(summary))
    [label] = shop.carrier.labels.values()
    assert label.validate_address == "no_validation"


async def test_unverifiable_address_says_why_and_offers_keep_or_edit(shop: ShopEnv) -> None:
    check = await to_recipient_check(shop, recipient=UNKNOWN)
    assert "could not verify" in check.content
    assert "street address was not found" in check.content
    assert not any("Use this" in text for text, _ in check.buttons)
    # Edit asks for the recipient again; the new address is checked again.
    replies = await shop.harness.press(EN, check, "Edit")
    assert "Step 2 of 6" in replies[-1].content
    doc = await draft(shop)
    assert doc["to_address"] == {} and "to_validation" not in doc
    replies = await shop.harness.say(EN, RECIPIENT)
    assert "corrected form" in replies[-1].content
    assert shop.carrier.call_count("validate_addresses") == 3  # sender, unknown, corrected


async def test_unverifiable_address_can_be_kept(shop: ShopEnv) -> None:
    check = await to_recipient_check(shop, recipient=UNKNOWN)
    replies = await shop.harness.press(EN, check, "Keep mine")
    assert "Step 3 of 6" in replies[-1].content
    await finish_parcel(shop)
    shipment = shop.carrier.shipments()[-1]
    assert shipment["ship_to"]["address_line1"] == "1 Unknown Road"
    assert shipment["ship_to"]["address_residential_indicator"] == "unknown"
    assert shipment["validate_address"] == "no_validation"


@pytest.mark.parametrize("kind", ["error_500", "rate_limit", "slow"])
async def test_a_validation_outage_never_blocks_the_order(shop: ShopEnv, kind: str) -> None:
    shop.carrier.inject_failure("validate_addresses", kind, times=2, delay=1.0)
    h = shop.harness
    await h.say(EN, "/order")
    replies = await h.say(EN, SENDER)
    assert any("check is unavailable" in m.content for m in replies)
    assert "Step 2 of 6" in replies[-1].content
    replies = await h.say(EN, RECIPIENT)
    assert any("check is unavailable" in m.content for m in replies)
    assert "Step 3 of 6" in replies[-1].content
    await finish_parcel(shop)
    shipment = shop.carrier.shipments()[-1]
    assert shipment["validate_address"] == "no_validation"
    assert shipment["ship_to"]["address_residential_indicator"] == "unknown"
    assert shipment["ship_to"]["address_line1"] == "123 Main Street"


async def test_use_this_after_an_edit_applies_nothing_and_shows_the_current_step(
    shop: ShopEnv,
) -> None:
    old = await to_recipient_check(shop)
    h = shop.harness
    # The customer edits instead, and types a different recipient (checked anew).
    await h.press(EN, old, "Edit")
    replies = await h.say(EN, "Ann Lee, 9 Oak Avenue, Austin, TX 78701")
    new = replies[-1]
    assert "9 Oak Ave" in new.content
    before = await draft(shop)
    replies = await h.press(EN, old, "Use this")
    after = await draft(shop)
    assert after["to_address"] == before["to_address"]  # nothing applied
    assert after["to_validation"] == before["to_validation"]
    assert "no longer applies" in replies[0].content
    assert "9 Oak Ave" in replies[-1].content  # the current step: the newest check
    assert replies[-1].buttons == new.buttons
    # The current check's own button still works.
    replies = await h.press(EN, new, "Use this")
    assert "Step 3 of 6" in replies[-1].content
    assert (await draft(shop))["to_address"]["street1"] == "9 Oak Ave"


async def test_a_double_tap_or_a_button_of_another_draft_applies_nothing(
    shop: ShopEnv,
) -> None:
    check = await to_recipient_check(shop)
    h = shop.harness
    await h.press(EN, check, "Use this")
    corrected = (await draft(shop))["to_address"]
    replies = await h.press(EN, check, "Keep mine")  # a second answer to the same check
    assert (await draft(shop))["to_validation"]["decision"] == "accepted"
    assert (await draft(shop))["to_address"] == corrected
    assert "Step 3 of 6" in replies[-1].content
    # A new order: the old draft's button does nothing to it.
    await h.say(EN, "/order")
    replies = await h.press(EN, check, "Use this")
    doc = await draft(shop)
    assert doc["from_address"] == {} and "to_validation" not in doc
    assert "Step 1 of 6" in replies[-1].content


async def test_text_while_a_choice_is_pending_repeats_the_question(shop: ShopEnv) -> None:
    check = await to_recipient_check(shop)
    replies = await shop.harness.say(EN, "hello?")
    assert replies[-1].buttons == check.buttons
    assert shop.carrier.call_count("validate_addresses") == 2  # not checked again


@pytest.mark.parametrize(
    ("user", "corrected", "use", "keep", "skipped", "reason"),
    [
        (RU, "исправленном виде", "Использовать", "Оставить мой", "Проверка адреса", "не найден"),
        (
            UK,
            "виправленому вигляді",
            "Використати",
            "Залишити мою",
            "Перевірка адреси",
            "не знайдено",
        ),
        (EN, "corrected form", "Use this", "Keep mine", "address check", "not found"),
    ],
)
async def test_screens_in_every_language(
    shop: ShopEnv, user: int, corrected: str, use: str, keep: str, skipped: str, reason: str
) -> None:
    check = await to_recipient_check(shop, user)
    assert corrected in check.content
    labels = " ".join(text for text, _ in check.buttons)
    assert use in labels and keep in labels
    await shop.harness.press(user, check, keep)
    bad = await to_recipient_check(shop, user, UNKNOWN)
    assert "1 Unknown Road" in bad.content and reason in bad.content
    shop.carrier.inject_failure("validate_addresses", "error_500")
    await shop.harness.say(user, "/order")
    replies = await shop.harness.say(user, SENDER)
    assert any(skipped in m.content for m in replies)


async def test_field_by_field_address_is_checked_and_again_after_an_edit(
    shop: ShopEnv,
) -> None:
    h = shop.harness
    await h.say(EN, "/order")
    await h.say(EN, SENDER)
    for value in ("John Smith", "123 Main Street"):
        await h.say(EN, value)
    await h.say(EN, "-")  # line 2: skipped
    for value in ("Springfield", "IL"):
        await h.say(EN, value)
    [phone] = await h.say(EN, "62704")
    assert "phone" in phone.content.lower()
    assert shop.carrier.call_count("validate_addresses") == 1  # only the sender so far
    [ask] = await h.say(EN, "-")  # no phone: the address is complete now
    assert "corrected form" in ask.content and "123 Main St" in ask.content
    await h.press(EN, ask, "Keep mine")
    summary = await finish_parcel(shop)
    assert "123 Main Street" in summary.content
    # Editing the recipient from the review: the new address is checked again.
    [choose] = await h.press(EN, summary, "Recipient")
    replies = await h.press(EN, choose, "Re-enter the whole address")
    assert "Step 2 of 6" in replies[-1].content
    replies = await h.say(EN, "Ann Lee, 9 Oak Avenue, Austin, TX 78701")
    assert "9 Oak Ave" in replies[-1].content and "corrected form" in replies[-1].content
    assert (await draft(shop))["to_validation"]["decision"] is None
