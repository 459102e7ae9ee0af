"""Refund reminders (3 days before the last refund day, a one-tap "Refund it") and the
automatic refund of unused labels on their last day (``/autorefund``)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from sandbox.telegram import SentMessage
from tests.conftest import FakeClock
from tests.e2e.shop import USER, ShopEnv, buy_label, run_jobs_only_when_called

OTHER = 7002


@pytest.fixture(autouse=True)
def _jobs_run_only_when_called(shop: ShopEnv) -> None:
    run_jobs_only_when_called(shop, "tracking:check", "refunds:remind", "refunds:check")


_buy = buy_label


def _services(shop: ShopEnv) -> Any:
    return shop.harness.application.bot_data.require_services()


async def _bought_days_ago(
    shop: ShopEnv, order: dict[str, Any], days: int, clock: FakeClock
) -> None:
    """The label was bought at noon (UTC) ``days`` calendar days before today."""
    day = clock().astimezone(UTC).date() - timedelta(days=days)
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]},
        {"$set": {"purchased_at": datetime.combine(day, time(12), tzinfo=UTC)}},
    )


async def _deliver(shop: ShopEnv, user_id: int = USER) -> list[SentMessage]:
    h = shop.harness
    mark = h.emulator.cursor(user_id)
    [job] = h.application.job_queue.get_jobs_by_name("outbox:deliver")  # type: ignore[union-attr]
    await job.run(h.application)
    return h.emulator.sent_messages(user_id, since=mark)


async def _forge(shop: ShopEnv, message: SentMessage, data: str) -> list[SentMessage]:
    stored = shop.harness.emulator.message(USER, message.message_id)
    assert stored.reply_markup is not None
    stored.reply_markup["inline_keyboard"][0][0]["callback_data"] = data
    return await shop.harness.press(USER, stored, data=data)


async def test_unused_label_is_reminded_once_three_days_before_its_last_day(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    refunds = _services(shop).refunds
    # The last day is purchase day + 27 (28 days counted from the purchase day).
    await _bought_days_ago(shop, order, 23, clock)
    assert await refunds.remind_unused() == 0  # four days before: not yet
    await _bought_days_ago(shop, order, 24, clock)
    assert await refunds.remind_unused() == 1
    assert await refunds.remind_unused() == 0  # once
    [reminder] = await _deliver(shop)
    assert "has not been used" in reminder.content
    assert str(order["tracking_number"]) in reminder.content
    assert "Refund it" in reminder.buttons[0][0]
    replies = await shop.harness.press(USER, reminder, "Refund it")
    assert "accepted" in replies[-1].content
    # Tapped again: nothing filed twice, and it says why.
    replies = await shop.harness.press(USER, reminder, "Refund it")
    assert "already requested" in replies[-1].content
    assert await shop.mongo.db["refunds"].count_documents({"order_id": order["_id"]}) == 1


@pytest.mark.parametrize(
    ("lang", "words", "button"),
    [("ru", "не использована", "Вернуть"), ("uk", "не використано", "Повернути")],
)
async def test_reminder_in_the_customers_language(
    shop: ShopEnv, clock: FakeClock, lang: str, words: str, button: str
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _services(shop).users.set_language(USER, lang)
    await _bought_days_ago(shop, order, 25, clock)
    assert await _services(shop).refunds.remind_unused() == 1
    [reminder] = await _deliver(shop)
    assert words in reminder.content and button in reminder.buttons[0][0]


async def test_old_or_forged_refund_it_buttons_do_nothing_but_say_why(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h = shop.harness
    h.add_user(OTHER)
    await h.say(OTHER, "/start")
    await shop.fund(USER, 20_000)
    await shop.fund(OTHER, 10_000)
    used = await _buy(shop)
    late = await _buy(shop)
    foreign = await _buy(shop, OTHER)
    for order in (used, late, foreign):
        await _bought_days_ago(shop, order, 24, clock)
    assert await _services(shop).refunds.remind_unused() == 3
    reminders = await _deliver(shop)
    by_number = {
        number: m
        for m in reminders
        for number in (str(used["tracking_number"]), str(late["tracking_number"]))
        if number in m.content
    }
    # Scanned after the reminder: the button re-checks and refuses.
    shop.carrier.advance_tracking(str(used["label_id"]), "accepted")
    clock.advance(hours=3)
    await _services(shop).tracking.check_due()
    replies = await h.press(USER, by_number[str(used["tracking_number"])], "Refund it")
    assert "already used" in replies[-1].content
    # Pressed after the window closed.
    await _bought_days_ago(shop, late, 28, clock)
    replies = await h.press(USER, by_number[str(late["tracking_number"])], "Refund it")
    assert "too old" in replies[-1].content
    # Someone else's order id in a forged button.
    reminder = by_number[str(used["tracking_number"])]
    replies = await _forge(shop, reminder, f"rf:one:{foreign['_id']}")
    assert "not found" in replies[-1].content
    assert await shop.mongo.db["refunds"].count_documents({}) == 0


async def test_used_labels_get_no_reminder(shop: ShopEnv, clock: FakeClock) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    shop.carrier.advance_tracking(str(order["label_id"]), "accepted")
    await _services(shop).tracking.check_due()
    [scanned] = await _deliver(shop)
    assert "The carrier has your parcel" in scanned.content
    await _bought_days_ago(shop, order, 24, clock)
    assert await _services(shop).refunds.remind_unused() == 0
    assert await _deliver(shop) == []


async def test_automatic_refund_on_the_last_day_is_filed_exactly_once(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h = shop.harness
    h.add_user(OTHER)
    await h.say(OTHER, "/start")
    [usage] = await h.say(USER, "/autorefund")
    assert "is off" in usage.content
    [on] = await h.say(USER, "/autorefund on")
    assert "Automatic refunds are on" in on.content
    await shop.fund(USER, 10_000)
    await shop.fund(OTHER, 10_000)
    mine = await _buy(shop)
    theirs = await _buy(shop, OTHER)  # OTHER never turned it on
    refunds = _services(shop).refunds
    for order in (mine, theirs):
        await _bought_days_ago(shop, order, 26, clock)
    assert await refunds.auto_refund_last_day() == {}  # the day before the last: nothing
    # The reminder says it will happen by itself.
    await refunds.remind_unused()
    [reminder] = await _deliver(shop)
    assert "Automatic refunds are on" in reminder.content
    for order in (mine, theirs):
        await _bought_days_ago(shop, order, 27, clock)
    assert await refunds.auto_refund_last_day() == {"accepted": 1}
    assert await refunds.auto_refund_last_day() == {}
    [told] = await _deliver(shop)
    assert "its refund has been requested" in told.content
    [refund] = await shop.mongo.db["refunds"].find({}).to_list(None)
    assert refund["order_id"] == mine["_id"] and refund["status"] == "requested"
    # The same path as the customer's own request: the job voids it and credits once.
    before = await shop.balance()
    assert await refunds.process_due() == {"credited": 1}
    assert await shop.balance() == before + int(mine["price_cents"])
    refunded = await shop.mongo.db["orders"].find_one({"_id": mine["_id"]})
    assert refunded is not None and refunded["status"] == "refunded"
    assert "tracking_due_at" not in refunded  # a voided label is not tracked any more
    await shop.audit_ok()


@pytest.mark.parametrize(
    ("lang", "words"), [("en", "Automatic refunds are off"), ("ru", "Автовозврат выключен"),
                        ("uk", "Автоповернення вимкнено")]
)
async def test_autorefund_command_in_each_language(
    shop: ShopEnv, lang: str, words: str
) -> None:
    await _services(shop).users.set_language(USER, lang)
    [answer] = await shop.harness.say(USER, "/autorefund off")
    assert words in answer.content
    assert await _services(shop).users.auto_refund_enabled(USER) is False


async def test_refund_it_pressed_after_the_session_expired_still_refunds(
    shop: ShopEnv, clock: FakeClock
) -> None:
    """The demo's flake, made certain: the customer left an order half way (a position
    stored with the session), days pass, and the reminder's "Refund it" is pressed. The
    expired session is dropped silently and the button does what it says."""
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    h = shop.harness
    [ask] = await h.say(USER, "/order")  # a position in the order conversation
    assert "Step 1 of 6" in ask.content
    await h.application.update_persistence()  # the position is in MongoDB, as after a flush
    clock.advance(days=24)
    await _bought_days_ago(shop, order, 24, clock)
    assert await _services(shop).refunds.remind_unused() == 1
    [reminder] = await _deliver(shop)
    replies = await h.press(USER, reminder, "Refund it")
    assert "accepted" in replies[-1].content
    assert not any("session" in m.content.lower() for m in replies)
    assert await shop.mongo.db["refunds"].count_documents({"order_id": order["_id"]}) == 1
