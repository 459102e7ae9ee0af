"""Parcel presets and the default sender end to end: /presets, one-tap buttons in an order,
stale and forged buttons, the limit and unique names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import ObjectId
from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import PresetSettings, Secrets
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import SentMessage
from services.orders import OrderService
from services.presets import PresetService
from storage.client import Mongo
from tests.conftest import OWNER_ID, FakeClock, make_settings
from tests.e2e.shop import RECIPIENT, SENDER, USER, ShopEnv, pay_button

OTHER = 7002
HOME = {
    "name": "Dana Scully",
    "street1": "500 W 5th Ave",
    "street2": None,
    "city": "New York",
    "state": "NY",
    "postal_code": "10001",
    "phone": "+12125550123",
}
OFFICE = {**HOME, "name": "Fox Mulder", "city": "Washington", "state": "DC",
          "postal_code": "20001"}
STALE = "This button is no longer active."


@pytest.fixture
def limit() -> int:
    return 10


@pytest.fixture
async def shop(mongo: Mongo, clock: FakeClock, limit: int) -> AsyncIterator[ShopEnv]:
    """``tests/e2e/shop.py``'s fixture plus a second customer and a settable preset limit."""
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    base = make_settings()
    shipping = base.shipping.model_copy(
        update={
            "base_url": carrier.base_url,
            "purchase_timeout_seconds": 10,
            "recovery_after_seconds": 30,
        }
    )
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        shipstation_test_api_key=SecretStr("TEST_sandbox_key"),
    )
    harness = BotHarness(
        make_settings(
            shipping=shipping, secrets=secrets, presets=PresetSettings(max_per_user=limit)
        ),
        mongo=mongo,
        clock=clock,
        rate_limits=False,
    )
    await harness.start()
    for uid in (USER, OTHER, OWNER_ID):
        harness.add_user(uid, first_name="Buyer")
    await harness.say(USER, "/start")
    await harness.say(OTHER, "/start")
    try:
        yield ShopEnv(harness, carrier, mongo)
    finally:
        await harness.close()
        await carrier.stop()


def _orders(shop: ShopEnv) -> OrderService:
    return shop.harness.application.bot_data.require_services().orders


def _presets(shop: ShopEnv) -> PresetService:
    return shop.harness.application.bot_data.require_services().presets


async def _stored(shop: ShopEnv, user_id: int = USER) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await shop.mongo.db["parcel_presets"].find({"user_id": user_id}).to_list(None)
    )
    return found


async def _draft(shop: ShopEnv, user_id: int = USER) -> dict[str, Any]:
    draft = await shop.mongo.db["orders"].find_one({"user_id": user_id, "status": "draft"})
    assert draft is not None
    return dict(draft)


async def _defaults(shop: ShopEnv, user_id: int = USER) -> list[str]:
    docs = await shop.mongo.db["templates"].find(
        {"user_id": user_id, "default_key": {"$exists": True}}
    ).to_list(None)
    return [d["name"] for d in docs]


async def _forge(
    shop: ShopEnv, user_id: int, message: SentMessage, data: str
) -> list[SentMessage]:
    """A modified client sends ``data`` from a button of ``message``."""
    stored = shop.harness.emulator.message(user_id, message.message_id)
    assert stored.reply_markup is not None
    stored.reply_markup["inline_keyboard"][0][0]["callback_data"] = data
    return await shop.harness.press(user_id, stored, data=data)


def _last_answer(shop: ShopEnv) -> str | None:
    return shop.harness.emulator.callback_answers[-1].text


async def _to_weight(shop: ShopEnv, user_id: int = USER) -> SentMessage:
    h = shop.harness
    await h.say(user_id, "/order")
    await h.say(user_id, SENDER)
    replies = await h.say(user_id, RECIPIENT)
    assert "Step 3 of 6" in replies[-1].content
    return replies[-1]


async def test_save_a_preset_then_one_tap_fills_the_parcel(shop: ShopEnv) -> None:
    h = shop.harness
    [empty] = await h.say(USER, "/presets")
    assert "You have none yet" in empty.content
    [ask] = await h.press(USER, empty, "New parcel preset")
    assert "weight" in ask.content
    [refused] = await h.say(USER, "abc")  # the order's own weight parsing
    assert "Weight: Send a number" in refused.content
    [size] = await h.say(USER, "2 lb")
    assert "weight 2 lb" in size.content and "size" in size.content
    [refused] = await h.say(USER, "10x8")
    assert "Size: Use the format length × width × height" in refused.content
    [name] = await h.say(USER, "10 x 8 x 4")
    assert "2 lb, 10×8×4 in" in name.content
    [saved] = await h.say(USER, "Small box")
    assert "Parcel preset “Small box” saved." in saved.content and "1 of 10" in saved.content
    [preset] = await _stored(shop)
    assert preset["parcel"] == {
        "weight_oz": 32, "length_in": "10", "width_in": "8", "height_in": "4"
    }
    assert saved.callback_data_for("Small box · 2 lb · 10×8×4") == f"pst:view:{preset['_id']}"
    # In an order: at the weight step, one tap fills weight and size and quotes rates.
    ask_weight = await _to_weight(shop)
    draft = await _draft(shop)
    data = ask_weight.callback_data_for("Small box")
    assert data == f"order:pp:{draft['_id']}:{preset['_id']}" and len(data.encode()) <= 64
    assert "tap a saved parcel" in ask_weight.content
    before = len(shop.carrier.shipments())
    replies = await h.press(USER, ask_weight, data=data)
    assert "Step 5 of 6" in replies[-1].content  # rates, the size step skipped
    draft = await _draft(shop)
    assert draft["parcel"] == preset["parcel"] and draft["rates"]
    [shipment] = shop.carrier.shipments()[before:]
    [package] = shipment["packages"]
    assert package["weight"] == {"value": 32, "unit": "ounce"}
    dims = package["dimensions"]
    assert (dims["length"], dims["width"], dims["height"]) == (10, 8, 4)


async def test_names_are_unique_regardless_of_case(shop: ShopEnv) -> None:
    h = shop.harness
    await _presets(shop).create(USER, "Small box", "1 lb", "6x6x6")
    [listing] = await h.say(USER, "/presets")
    await h.press(USER, listing, "New parcel preset")
    await h.say(USER, "12 oz")
    await h.say(USER, "8x6x2")
    [refused] = await h.say(USER, "  SMALL box ")
    assert "already have a parcel preset with that name" in refused.content
    assert "Send another name" in refused.content
    [saved] = await h.say(USER, "Envelope")
    assert "“Envelope” saved" in saved.content
    assert sorted(p["name"] for p in await _stored(shop)) == ["Envelope", "Small box"]
    # Renaming to a used name is refused the same way.
    [view] = await h.press(USER, saved, "Envelope")
    [ask] = await h.press(USER, view, "Rename")
    assert "new name for “Envelope”" in ask.content
    [refused] = await h.say(USER, "small BOX")
    assert "already have a parcel preset with that name" in refused.content
    [renamed] = await h.say(USER, "Flat")
    assert "Renamed to “Flat”." in renamed.content
    assert sorted(p["name"] for p in await _stored(shop)) == ["Flat", "Small box"]


@pytest.mark.parametrize("limit", [2])
async def test_the_limit_is_enforced(shop: ShopEnv) -> None:
    h = shop.harness
    await _presets(shop).create(USER, "One", "1 lb", "6x6x6")
    [listing] = await h.say(USER, "/presets")
    assert "1 of 2" in listing.content
    await h.press(USER, listing, "New parcel preset")
    await h.say(USER, "1 lb")
    await h.say(USER, "6x6x6")
    await _presets(shop).create(USER, "Two", "2 lb", "6x6x6")  # meanwhile, elsewhere
    [full] = await h.say(USER, "Three")
    assert "already have 2 parcel presets, the most you can keep" in full.content
    [refused] = await h.press(USER, full, "New parcel preset")
    assert "already have 2 parcel presets" in refused.content
    assert len(await _stored(shop)) == 2


async def test_delete_asks_for_confirmation(shop: ShopEnv) -> None:
    h = shop.harness
    await _presets(shop).create(USER, "Small box", "1 lb", "6x6x6")
    [listing] = await h.say(USER, "/presets")
    [view] = await h.press(USER, listing, "Small box")
    assert "Weight: 1 lb" in view.content and "6×6×6 in" in view.content
    [confirm] = await h.press(USER, view, "Delete")
    assert "Delete the parcel preset “Small box”?" in confirm.content
    [deleted] = await h.press(USER, confirm, "Yes, delete")
    assert "“Small box” deleted" in deleted.content and "none yet" in deleted.content
    assert await _stored(shop) == []
    assert await h.press(USER, confirm, "Yes, delete") == []
    assert _last_answer(shop) == STALE


async def test_an_old_preset_button_fills_nothing_on_a_newer_step_or_draft(
    shop: ShopEnv,
) -> None:
    h = shop.harness
    await _presets(shop).create(USER, "Small box", "1 lb", "6x6x6")
    ask_weight = await _to_weight(shop)
    old = ask_weight.callback_data_for("Small box")
    # The weight typed: the size is asked; the old button fills nothing and asks again.
    [ask_size] = await h.say(USER, "3 lb")
    assert "Step 4 of 6" in ask_size.content
    replies = await h.press(USER, ask_weight, data=old)
    assert "Step 4 of 6" in replies[-1].content
    assert _last_answer(shop) == STALE
    assert (await _draft(shop))["parcel"] == {"weight_oz": 48}
    # A new order: the first draft's button fills nothing in it either.
    # (/order says the unfinished draft is discarded, then asks step 1.)
    started = await h.say(USER, "/order")
    assert "Step 1 of 6" in started[-1].content
    replies = await h.press(USER, ask_weight, data=old)
    assert "Step 1 of 6" in replies[-1].content
    assert _last_answer(shop) == STALE
    draft = await _draft(shop)
    assert not draft.get("parcel") and not draft.get("from_address")
    # Pressed at the new draft's sender step with its own id: still not the parcel step.
    await h.say(USER, SENDER)
    own = f"order:pp:{draft['_id']}:{old.rsplit(':', 1)[-1]}"
    replies = await _forge(shop, USER, started[-1], own)
    assert "Step 2 of 6" in replies[-1].content
    assert not (await _draft(shop)).get("parcel")


async def test_forged_buttons_with_someone_elses_ids_fill_nothing(shop: ShopEnv) -> None:
    h = shop.harness
    theirs = await _presets(shop).create(USER, "Small box", "1 lb", "6x6x6")
    template = await _orders(shop).save_template(USER, "Home", HOME)
    await _orders(shop).set_default_sender(USER, str(template["_id"]))
    [first] = await h.say(OTHER, "/order")
    draft = await _draft(shop, OTHER)
    replies = await _forge(shop, OTHER, first, f"order:dfl:{draft['_id']}:{template['_id']}")
    assert _last_answer(shop) == STALE
    assert "Step 1 of 6" in replies[-1].content
    assert not (await _draft(shop, OTHER)).get("from_address")
    ask_weight = await _to_weight(shop, OTHER)
    draft = await _draft(shop, OTHER)
    for preset_id in (theirs["_id"], ObjectId()):
        replies = await _forge(shop, OTHER, ask_weight, f"order:pp:{draft['_id']}:{preset_id}")
        assert _last_answer(shop) == STALE
        assert "Step 3 of 6" in replies[-1].content
    assert not (await _draft(shop, OTHER)).get("parcel")
    # The presets screens: someone else's preset is stale, nothing changes.
    [listing] = await h.say(OTHER, "/presets")
    for action in ("view", "rename", "delete", "delete-yes"):
        assert await _forge(shop, OTHER, listing, f"pst:{action}:{theirs['_id']}") == []
        assert _last_answer(shop) == STALE
    # ... and so is making their template my default sender.
    for action in ("default", "undefault"):
        assert await _forge(shop, OTHER, listing, f"tpl:{action}:{template['_id']}") == []
        assert _last_answer(shop) == STALE
    assert [p["name"] for p in await _stored(shop)] == ["Small box"]
    assert await _defaults(shop) == ["Home"] and await _defaults(shop, OTHER) == []


async def test_the_default_sender_is_one_tap_at_step_1(shop: ShopEnv) -> None:
    h = shop.harness
    home = await _orders(shop).save_template(USER, "Home", HOME)
    await _orders(shop).save_template(USER, "Office", OFFICE)
    [listing] = await h.say(USER, "/templates")
    [view] = await h.press(USER, listing, "Home")
    [marked] = await h.press(USER, view, "Make default sender")
    assert "“Home” is now your default sender" in marked.content
    assert "Your default sender: offered first" in marked.content
    assert marked.callback_data_for("Stop using as default") == f"tpl:undefault:{home['_id']}"
    assert await _defaults(shop) == ["Home"]
    [first] = await h.say(USER, "/order")
    assert "Use your default sender Dana Scully, New York?" in first.content
    draft = await _draft(shop)
    data = first.callback_data_for("Use your default sender Dana Scully, New York")
    assert data == f"order:dfl:{draft['_id']}:{home['_id']}" and len(data.encode()) <= 64
    assert [text for text, _ in first.buttons if "Home" in text] == []  # not twice
    assert first.callback_data_for("Office").startswith("order:tpl:from:")
    replies = await h.press(USER, first, data=data)
    assert "Step 2 of 6" in replies[-1].content  # the sender is complete: on to the recipient
    assert (await _draft(shop))["from_address"] == HOME
    # Pressed again now (the recipient is asked): fills nothing, asks the recipient again.
    replies = await h.press(USER, first, data=data)
    assert "Step 2 of 6" in replies[-1].content and _last_answer(shop) == STALE
    assert not (await _draft(shop)).get("to_address")
    # A newer order: the old draft's default button fills nothing.
    await h.say(USER, "/order")
    replies = await h.press(USER, first, data=data)
    assert "Step 1 of 6" in replies[-1].content and _last_answer(shop) == STALE
    assert not (await _draft(shop)).get("from_address")


async def test_another_default_replaces_the_old_and_deleting_it_removes_it(
    shop: ShopEnv,
) -> None:
    h = shop.harness
    home = await _orders(shop).save_template(USER, "Home", HOME)
    office = await _orders(shop).save_template(USER, "Office", OFFICE)
    await _orders(shop).set_default_sender(USER, str(home["_id"]))
    [listing] = await h.say(USER, "/templates")
    assert listing.callback_data_for("⭐ Home") == f"tpl:view:{home['_id']}"
    [view] = await h.press(USER, listing, "Office")
    [marked] = await h.press(USER, view, "Make default sender")
    assert "“Office” is now your default sender" in marked.content
    assert await _defaults(shop) == ["Office"]
    [listing] = await h.say(USER, "/templates")
    assert listing.callback_data_for("⭐ Office") == f"tpl:view:{office['_id']}"
    assert listing.callback_data_for("📇 Home") == f"tpl:view:{home['_id']}"
    [first] = await h.say(USER, "/order")
    assert "Fox Mulder, Washington" in first.content
    # Stop using it: no default, no default button.
    [view] = await h.press(USER, listing, "Office")
    [cleared] = await h.press(USER, view, "Stop using as default")
    assert "“Office” is no longer your default sender" in cleared.content
    assert await _defaults(shop) == []
    await h.press(USER, cleared, "Make default sender")
    assert await _defaults(shop) == ["Office"]
    # Deleting the default template leaves no default.
    [view] = await h.press(USER, listing, "Office")
    [confirm] = await h.press(USER, view, "Delete")
    await h.press(USER, confirm, "Yes, delete")
    assert await _defaults(shop) == []
    assert await _orders(shop).default_sender(USER) is None
    [first] = await h.say(USER, "/order")
    assert "default sender" not in first.content
    assert first.callback_data_for("Home").startswith("order:tpl:from:")


async def test_presets_are_in_the_command_menu_help_and_templates(shop: ShopEnv) -> None:
    h = shop.harness
    [help_text] = await h.say(USER, "/help")
    assert "/presets" in help_text.content
    [listing] = await h.say(USER, "/templates")
    [presets] = await h.press(USER, listing, "Parcel presets")
    assert "Parcel presets" in presets.content


async def test_the_parcel_of_the_last_label_can_be_saved(shop: ShopEnv) -> None:
    h = shop.harness
    [listing] = await h.say(USER, "/presets")
    assert not any("last parcel" in text for text, _ in listing.buttons)
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()  # 2 lb 4 oz, 10x8x4
    await h.press(USER, summary, data=pay_button(summary))
    order = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "purchased"})
    assert order is not None
    # Someone else cannot take it.
    [theirs] = await h.say(OTHER, "/presets")
    assert await _forge(shop, OTHER, theirs, f"pst:last:{order['_id']}") == []
    assert _last_answer(shop) == STALE
    await h.say(OTHER, "Stolen")
    assert await _stored(shop, OTHER) == []
    [listing] = await h.say(USER, "/presets")
    data = listing.callback_data_for("Save my last parcel (2 lb 4 oz, 10×8×4 in)")
    assert data == f"pst:last:{order['_id']}"
    [ask] = await h.press(USER, listing, data=data)
    assert "2 lb 4 oz, 10×8×4 in" in ask.content
    [saved] = await h.say(USER, "Shoe box")
    assert "“Shoe box” saved" in saved.content
    [preset] = await _stored(shop)
    assert preset["parcel"] == {
        "weight_oz": 36, "length_in": "10", "width_in": "8", "height_in": "4"
    }
