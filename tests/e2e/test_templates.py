"""Address templates end to end: save after an order, reuse, rename, delete, limit, forgery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import ObjectId
from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import Secrets
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import SentMessage
from services.orders import OrderService
from storage.client import Mongo
from tests.conftest import OWNER_ID, FakeClock, make_settings
from tests.e2e.shop import RECIPIENT, SENDER, USER, ShopEnv, pay_button

OTHER = 7002
HOME = {
    "name": "Jane Doe",
    "street1": "500 W 5th Ave",
    "street2": "Suite 200",
    "city": "New York",
    "state": "NY",
    "postal_code": "10001",
    "phone": "+12125550123",
}
STALE = "This button is no longer active."


@pytest.fixture
def limit() -> int:
    return 20


@pytest.fixture
async def shop(mongo: Mongo, clock: FakeClock, limit: int) -> AsyncIterator[ShopEnv]:
    """``tests/e2e/shop.py``'s fixture plus a second customer and a settable template limit."""
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    base = make_settings()
    shipping = base.shipping.model_copy(
        update={
            "base_url": carrier.base_url,
            "purchase_timeout_seconds": 10,
            "recovery_after_seconds": 30,
            "templates_per_user": limit,
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


async def _templates(shop: ShopEnv, user_id: int = USER) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await shop.mongo.db["templates"].find({"user_id": user_id}).to_list(None)
    )
    return found


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


async def test_save_recipient_after_order_and_use_it_in_the_next(shop: ShopEnv) -> None:
    h = shop.harness
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    replies = await h.press(USER, summary, data=pay_button(summary))
    bought = next(m for m in replies if "Label bought" in m.content)
    [ask] = await h.press(USER, bought, "Save recipient as template")
    assert "John Smith" in ask.content and "name for this template" in ask.content
    [saved] = await h.say(USER, "Mom")
    assert "Template “Mom” saved." in saved.content
    [template] = await _templates(shop)
    assert template["address"]["name"] == "John Smith"
    assert set(template["address"]) == set(HOME)  # skipped parts stored as None
    [listing] = await h.say(USER, "/templates")
    assert "1 of 20" in listing.content
    assert listing.callback_data_for("Mom") == f"tpl:view:{template['_id']}"
    # The next order offers it at the first question; one tap fills the sender.
    [first] = await h.say(USER, "/order")
    assert "Step 1 of 6" in first.content
    data = first.callback_data_for("Mom")
    assert data == f"order:tpl:from:{template['_id']}"
    replies = await h.press(USER, first, data=data)
    # The template has no phone, and the sender's phone is required (ShipStation needs a
    # phone on both addresses; a recipient without one gets the sender's): asked for it.
    ask_phone = replies[-1]
    assert "Step 1 of 6 · Sender — phone number" in ask_phone.content
    assert not any("Skip" in text for text, _ in ask_phone.buttons)
    replies = await h.say(USER, "(217) 555-0188")
    assert "Step 2 of 6" in replies[-1].content
    draft = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert draft is not None
    assert draft["from_address"] == {**template["address"], "phone": "+12175550188"}


async def test_new_template_from_pasted_address(shop: ShopEnv) -> None:
    h = shop.harness
    [empty] = await h.say(USER, "/templates")
    assert "You have none yet" in empty.content
    [ask] = await h.press(USER, empty, "New template")
    assert "whole address" in ask.content
    [problems] = await h.say(USER, "Jane Doe, 500 W 5th Ave")
    assert "city" in problems.content and "ZIP code" in problems.content
    assert "send the whole address again" in problems.content
    [bad_zip] = await h.say(USER, "Jane Doe, 500 W 5th Ave, New York, NY 1000")
    assert "ZIP code" in bad_zip.content
    [hidden] = await h.say(USER, "Jane\u202e Doe, 500 W 5th Ave, New York, NY 10001")
    assert "address: Please use Latin letters" in hidden.content
    [named] = await h.say(USER, SENDER)
    assert "Jane Doe" in named.content and "name for this template" in named.content
    [refused] = await h.say(USER, "x" * 40)
    assert "at most 32 characters" in refused.content
    [refused] = await h.say(USER, "Home\u202e")
    assert "control characters" in refused.content
    [saved] = await h.say(USER, "<b>Work</b>")
    assert "Template “<b>Work</b>” saved." in saved.content  # shown as text, not markup
    [template] = await _templates(shop)
    assert template["name"] == "<b>Work</b>" and template["address"] == HOME


async def test_cancel_leaves_nothing_behind(shop: ShopEnv) -> None:
    h = shop.harness
    [listing] = await h.say(USER, "/templates")
    [ask] = await h.press(USER, listing, "New template")
    await h.say(USER, SENDER)
    [cancelled] = await h.say(USER, "/cancel")
    assert "Cancelled" in cancelled.content
    [not_understood] = await h.say(USER, "Home")
    assert "Template" not in not_understood.content
    assert await _templates(shop) == []


async def test_rename_refuses_duplicates_and_accepts_a_new_name(shop: ShopEnv) -> None:
    h = shop.harness
    home = await _orders(shop).save_template(USER, "Home", HOME)
    await _orders(shop).save_template(USER, "Work", HOME)
    [listing] = await h.say(USER, "/templates")
    [view] = await h.press(USER, listing, "Home")
    assert "Home" in view.content and "500 W 5th Ave" in view.content
    [ask] = await h.press(USER, view, "Rename")
    assert "new name for “Home”" in ask.content
    [refused] = await h.say(USER, "WORK")  # unique regardless of case
    assert "already have a template with that name" in refused.content
    [renamed] = await h.say(USER, "Office")
    assert "Renamed to “Office”." in renamed.content
    names = sorted(t["name"] for t in await _templates(shop))
    assert names == ["Office", "Work"]
    assert renamed.callback_data_for("Office") == f"tpl:view:{home['_id']}"


async def test_delete_asks_for_confirmation(shop: ShopEnv) -> None:
    h = shop.harness
    await _orders(shop).save_template(USER, "Home", HOME)
    [listing] = await h.say(USER, "/templates")
    [view] = await h.press(USER, listing, "Home")
    [confirm] = await h.press(USER, view, "Delete")
    assert "Delete the template “Home”?" in confirm.content
    [back] = await h.press(USER, confirm, "No, keep it")
    assert "500 W 5th Ave" in back.content
    assert len(await _templates(shop)) == 1
    [deleted] = await h.press(USER, confirm, "Yes, delete")
    assert "Template “Home” deleted." in deleted.content
    assert "You have none yet" in deleted.content
    assert await _templates(shop) == []
    # The same confirmation again, or the old view's buttons: stale, nothing happens.
    assert await h.press(USER, confirm, "Yes, delete") == []
    assert _last_answer(shop) == STALE
    assert await h.press(USER, view, "Rename") == []
    assert _last_answer(shop) == STALE


@pytest.mark.parametrize("limit", [2])
async def test_limit_is_enforced(shop: ShopEnv) -> None:
    h = shop.harness
    await _orders(shop).save_template(USER, "Home", HOME)
    [listing] = await h.say(USER, "/templates")
    assert "1 of 2" in listing.content
    await h.press(USER, listing, "New template")
    [ask_name] = await h.say(USER, SENDER)
    # Meanwhile a second template is saved (another tap): the name is refused by the limit.
    await _orders(shop).save_template(USER, "Work", HOME)
    [full] = await h.say(USER, "Parents")
    assert "the most you can keep" in full.content and "2 of 2" in full.content
    assert len(await _templates(shop)) == 2
    [refused] = await h.press(USER, full, "New template")
    assert "already have 2 templates" in refused.content
    assert len(await _templates(shop)) == 2
    # After a purchase the save button says so too instead of asking for a name.
    await shop.fund(USER, 10_000)
    summary = await shop.to_summary()
    replies = await h.press(USER, summary, data=pay_button(summary))
    bought = next(m for m in replies if "Label bought" in m.content)
    [refused] = await h.press(USER, bought, "Save recipient as template")
    assert "already have 2 templates" in refused.content
    assert len(await _templates(shop)) == 2


async def test_forged_buttons_for_another_users_template_change_nothing(shop: ShopEnv) -> None:
    h = shop.harness
    theirs = await _orders(shop).save_template(USER, "Home", HOME)
    await _orders(shop).save_template(OTHER, "Mine", HOME)
    [listing] = await h.say(OTHER, "/templates")
    tid = theirs["_id"]
    for action in ("view", "rename", "delete", "delete-yes"):
        assert await _forge(shop, OTHER, listing, f"tpl:{action}:{tid}") == []
        assert _last_answer(shop) == STALE
    assert await _forge(shop, OTHER, listing, f"tpl:view:{ObjectId()}") == []
    assert _last_answer(shop) == STALE
    # Still no conversation: a text is not taken as a new name.
    await h.say(OTHER, "Stolen")
    [template] = await _templates(shop)
    assert template["name"] == "Home" and template["_id"] == tid
    # Saving the recipient of someone else's order (or an unknown one) is refused politely.
    orders = _orders(shop)
    draft = await orders.start_draft(USER)
    await orders.set_address(draft, "to", HOME)
    for order_id in (draft["_id"], ObjectId()):
        assert await _forge(shop, OTHER, listing, f"tpl:save:{order_id}") == []
        assert "order was not found in your account" in (_last_answer(shop) or "")
    await h.say(OTHER, "Stolen")
    assert [t["name"] for t in await _templates(shop, OTHER)] == ["Mine"]


async def test_use_for_a_new_order_fills_the_sender(shop: ShopEnv) -> None:
    h = shop.harness
    await _orders(shop).save_template(USER, "Home", HOME)
    [listing] = await h.say(USER, "/templates")
    [view] = await h.press(USER, listing, "Home")
    replies = await h.press(USER, view, "Use for a new order")
    assert "Step 2 of 6" in replies[-1].content
    replies = await h.say(USER, RECIPIENT)
    assert "Step 3 of 6" in replies[-1].content


async def test_main_menu_button_opens_the_list(shop: ShopEnv) -> None:
    h = shop.harness
    [_, menu] = await h.say(USER, "/start")
    assert "menu:templates" in [data for _, data in menu.buttons]
    [listing] = await h.press(USER, menu, data="menu:templates")
    assert "Address templates" in listing.content


async def test_an_old_template_button_fills_no_other_side(shop: ShopEnv) -> None:
    """The template button shown at the sender step, pressed once the bot asks for the
    recipient, fills nothing: it names the side it was shown for."""
    h = shop.harness
    await h.application.bot_data.require_services().orders.save_template(USER, "Mom", HOME)
    [first] = await h.say(USER, "/order")
    old = first.callback_data_for("Mom")
    assert old.startswith("order:tpl:from:")
    replies = await h.say(USER, SENDER)
    assert "Recipient" in replies[-1].content
    replies = await h.press(USER, first, data=old)
    assert "Recipient" in replies[-1].content  # the current step, asked again
    draft = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert draft is not None and not draft.get("to_address")
    assert STALE in [a.text for a in h.emulator.callback_answers if a.text]


async def test_an_old_skip_button_skips_nothing_else(shop: ShopEnv) -> None:
    """Skip shown for the sender's second street line, pressed at the recipient's (also
    skippable), skips nothing."""
    h = shop.harness
    await h.say(USER, "/order")
    for text in ("Jane Doe", "500 W 5th Ave"):
        replies = await h.say(USER, text)
    sender_skip = replies[-1]
    assert sender_skip.callback_data_for("Skip") == "order:skip:from:street2"
    await h.press(USER, sender_skip, "Skip")
    for text in ("New York", "NY", "10001", "+12125550123", "John Smith", "1 Main St"):
        replies = await h.say(USER, text)
    assert replies[-1].callback_data_for("Skip") == "order:skip:to:street2"
    replies = await h.press(USER, sender_skip, "Skip")
    assert replies[-1].callback_data_for("Skip") == "order:skip:to:street2"  # asked again
    draft = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert draft is not None and "street2" not in (draft.get("to_address") or {})
