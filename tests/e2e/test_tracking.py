"""Tracking in the chat: milestone notices through the outbox, the Track button, used labels
not refundable, and carrier outages (backoff, no spam, no lost milestone)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

import pytest

from models.shipping import TrackingEvent
from sandbox.telegram import SentMessage
from services.tracking import milestone_of
from tests.conftest import FakeClock
from tests.e2e.shop import USER, ShopEnv, buy_label, run_jobs_only_when_called

OTHER = 7002


@pytest.fixture(autouse=True)
def _jobs_run_only_when_called(shop: ShopEnv) -> None:
    run_jobs_only_when_called(shop, "tracking:check", "refunds:remind", "refunds:check")


_buy = buy_label


def _services(shop: ShopEnv) -> Any:
    return shop.harness.application.bot_data.require_services()


async def _deliver(shop: ShopEnv, user_id: int = USER) -> list[SentMessage]:
    """Runs the outbox job once; returns what reached ``user_id``'s chat."""
    h = shop.harness
    mark = h.emulator.cursor(user_id)
    [job] = h.application.job_queue.get_jobs_by_name("outbox:deliver")  # type: ignore[union-attr]
    await job.run(h.application)
    return h.emulator.sent_messages(user_id, since=mark)


async def _check(shop: ShopEnv, clock: FakeClock) -> dict[str, int]:
    """The next tracking run, once every check is due again."""
    clock.advance(hours=3)
    counts: dict[str, int] = await _services(shop).tracking.check_due()
    return counts


def _client(shop: ShopEnv) -> Any:
    return shop.harness.application.bot_data.extras["shipping"].client("test")


def _record_sleeps(shop: ShopEnv) -> list[float]:
    """The client's retry waits are recorded instead of slept (no real waiting in tests)."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    _client(shop)._sleep = sleep
    return waits


async def _forge(shop: ShopEnv, message: SentMessage, data: str) -> list[SentMessage]:
    """A modified client sends ``data`` from a button of ``message``."""
    stored = shop.harness.emulator.message(USER, message.message_id)
    assert stored.reply_markup is not None
    stored.reply_markup["inline_keyboard"][0][0]["callback_data"] = data
    return await shop.harness.press(USER, stored, data=data)


async def _order(shop: ShopEnv, order: dict[str, Any]) -> dict[str, Any]:
    doc = await shop.mongo.db["orders"].find_one({"_id": order["_id"]})
    assert doc is not None
    return dict(doc)


async def test_each_milestone_is_told_once_and_tracking_stops_at_delivered(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    label = str(order["label_id"])
    # Not scanned yet: checked, nothing to tell.
    assert await _check(shop, clock) == {"checked": 1}
    assert await _deliver(shop) == []
    told: list[str] = []
    for step, words in (
        ("accepted", "The carrier has your parcel"),
        ("in_transit", "is on its way"),
        ("out_for_delivery", "is out for delivery"),
        ("delivered", "was delivered"),
    ):
        shop.carrier.advance_tracking(label, step)
        await _check(shop, clock)
        [notice] = await _deliver(shop)
        assert words in notice.content and str(order["tracking_number"]) in notice.content
        assert notice.callback_data_for("Track") == f"lbl:trk:{order['_id']}"
        told.append(step)
        # Checked again: nothing new, nothing sent.
        await _check(shop, clock)
        assert await _deliver(shop) == []
    doc = await _order(shop, order)
    assert doc["tracking_milestones"] == told
    assert "tracking_due_at" not in doc and doc["tracking"]["ended"] == "delivered"
    calls = shop.carrier.call_count("track")
    assert await _check(shop, clock) == {}
    assert shop.carrier.call_count("track") == calls  # no more calls after delivered


@pytest.mark.parametrize(
    ("lang", "words"),
    [("en", "was delivered"), ("ru", "доставлено"), ("uk", "доставлено")],
)
async def test_notices_are_in_the_customers_language(
    shop: ShopEnv, clock: FakeClock, lang: str, words: str
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _services(shop).users.set_language(USER, lang)
    shop.carrier.advance_tracking(str(order["label_id"]), "delivered")
    await _check(shop, clock)
    [notice] = await _deliver(shop)
    assert words in notice.content
    assert "📍" in notice.buttons[0][0]


async def test_a_scanned_label_is_used_and_no_longer_refundable(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=6)}}
    )
    h = shop.harness
    [before] = await h.say(USER, "/labels")
    assert f"rf:one:{order['_id']}" in [data for _, data in before.buttons]
    shop.carrier.advance_tracking(str(order["label_id"]), "accepted")
    await _check(shop, clock)
    assert (await _order(shop, order))["first_scan_at"] is not None
    [labels] = await h.say(USER, "/labels")
    assert f"rf:one:{order['_id']}" not in [data for _, data in labels.buttons]
    assert "Refund possible" not in labels.content
    # The old Refund button, pressed anyway, files nothing and says why.
    replies = await h.press(USER, before, data=f"rf:one:{order['_id']}")
    assert "already used" in replies[-1].content
    assert await shop.mongo.db["refunds"].count_documents({}) == 0


async def test_track_button_shows_latest_events_and_refuses_other_orders(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h = shop.harness
    h.add_user(OTHER)
    await h.say(OTHER, "/start")
    await shop.fund(USER, 10_000)
    await shop.fund(OTHER, 10_000)
    order = await _buy(shop)
    foreign = await _buy(shop, OTHER)
    [labels] = await h.say(USER, "/labels")
    [fresh] = await h.press(USER, labels, data=f"lbl:trk:{order['_id']}")
    assert "Tracking" in fresh.content and "No scans yet" in fresh.content
    shop.carrier.advance_tracking(str(order["label_id"]), "accepted")
    shop.carrier.advance_tracking(str(order["label_id"]), "in_transit")
    [shown] = await h.press(USER, labels, data=f"lbl:trk:{order['_id']}")
    assert "Status: In Transit" in shown.content
    assert "Accepted" in shown.content and "(New York, NY" in shown.content
    # Pressing Track records the first scan at once: no refund for it any more.
    assert (await _order(shop, order))["first_scan_at"] is not None
    # Someone else's order id, and one that does not exist: "not found", nothing shown.
    for data in (f"lbl:trk:{foreign['_id']}", "lbl:trk:0123456789abcdef01234567"):
        assert await _forge(shop, labels, data) == []
        answer = h.emulator.callback_answers[-1]
        assert answer.data == data and answer.show_alert and answer.text == "Label not found."
    # The carrier down: the last known status, no error.
    _record_sleeps(shop)
    shop.carrier.inject_failure("track", "error_500", times=10)
    [down] = await _forge(shop, labels, f"lbl:trk:{order['_id']}")
    assert "does not answer right now" in down.content


async def test_outage_backs_off_sends_nothing_twice_and_loses_no_milestone(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    label = str(order["label_id"])
    _record_sleeps(shop)
    shop.carrier.inject_failure("track", "error_500", times=1000)
    tracking = _services(shop).tracking
    delays = []
    for _ in range(4):
        assert await tracking.check_due() == {"unavailable": 1}
        doc = await _order(shop, order)
        delays.append(doc["tracking_due_at"] - clock())
        # Not due again until the backoff has passed: no call in between.
        calls = shop.carrier.call_count("track")
        clock.advance(seconds=delays[-1].total_seconds() - 1)
        assert await tracking.check_due() == {}
        assert shop.carrier.call_count("track") == calls
        clock.advance(seconds=1)
    assert delays == [timedelta(seconds=300 * 2**n) for n in range(4)]
    # Meanwhile the parcel went all the way; the carrier comes back.
    for step in ("accepted", "in_transit", "out_for_delivery", "delivered"):
        shop.carrier.advance_tracking(label, step)
    shop.carrier.clear_failures()
    breaker = _client(shop).breaker
    assert str(breaker.state).lower().endswith("open")  # the outage opened the circuit
    breaker._opened_at = breaker._clock() - 3600  # noqa: SLF001 - its cooldown has passed
    assert await tracking.check_due() == {"ended": 1}
    # One notice, for where the parcel is now (the fake's scans share a timestamp here, so
    # the order of a parcel's life decides): not four at once.
    [notice] = await _deliver(shop)
    assert "was delivered" in notice.content
    doc = await _order(shop, order)
    assert doc["tracking"]["failures"] == 0
    assert set(doc["tracking_milestones"]) == {
        "accepted", "in_transit", "out_for_delivery", "delivered"
    }


async def test_a_replayed_check_never_sends_a_milestone_twice(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    shop.carrier.advance_tracking(str(order["label_id"]), "accepted")
    await _check(shop, clock)
    # A crash after the notice was queued but before the order recorded it: replayed.
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]},
        {"$set": {"tracking_milestones": [], "tracking_due_at": clock()}},
    )
    await _services(shop).tracking.check_due()
    assert len(await _deliver(shop)) == 1
    assert (
        await shop.mongo.db["outbox"].count_documents(
            {"dedup_key": f"notice:tracking:{order['_id']}:accepted"}
        )
        == 1
    )


async def test_rate_limit_ends_the_run_and_calls_are_bounded(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 30_000)
    orders = [await _buy(shop) for _ in range(3)]
    tracking = _services(shop).tracking
    tracking._config = dataclasses.replace(tracking._config, max_calls=2)
    calls = shop.carrier.call_count("track")
    assert await tracking.check_due() == {"checked": 2}
    assert shop.carrier.call_count("track") == calls + 2
    clock.advance(hours=3)
    waits = _record_sleeps(shop)
    shop.carrier.inject_failure("track", "rate_limit", times=100, retry_after=900)
    calls = shop.carrier.call_count("track")
    assert await tracking.check_due() == {"rate_limited": 1}
    # The client honoured Retry-After (capped) between its own attempts, then gave up;
    # the run made no call for the other labels.
    assert waits and all(w == 60 for w in waits)
    assert shop.carrier.call_count("track") == calls + len(waits) + 1
    docs = [await _order(shop, order) for order in orders]
    limited = [d for d in docs if d["tracking"].get("last_error") == "ProviderRateLimited"]
    assert len(limited) == 1
    # Retry-After (15 minutes) is longer than the first backoff (5): it wins.
    assert limited[0]["tracking_due_at"] - clock() == timedelta(seconds=900)


async def test_opted_out_customers_get_only_essential_notices(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await shop.harness.say(USER, "/notifications off")
    label = str(order["label_id"])
    shop.carrier.advance_tracking(label, "accepted")
    await _check(shop, clock)
    shop.carrier.advance_tracking(label, "in_transit")
    await _check(shop, clock)
    assert await _deliver(shop) == []
    shop.carrier.advance_tracking(label, "exception")
    await _check(shop, clock)
    [notice] = await _deliver(shop)
    assert "reports a problem" in notice.content and "Exception" in notice.content
    shop.carrier.advance_tracking(label, "returned")
    await _check(shop, clock)
    [back] = await _deliver(shop)
    assert "returned to the sender" in back.content
    assert (await _order(shop, order))["tracking"]["ended"] == "returned"


async def test_tracking_ends_sixty_days_after_purchase(shop: ShopEnv, clock: FakeClock) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=61)}}
    )
    calls = shop.carrier.call_count("track")
    assert await _services(shop).tracking.check_due() == {"expired": 1}
    assert shop.carrier.call_count("track") == calls
    assert "tracking_due_at" not in await _order(shop, order)


def test_unknown_status_codes_give_no_milestone(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="services.tracking"):
        assert milestone_of(TrackingEvent(occurred_at=None, status_code="ZZ")) is None
    assert "status_code=ZZ" in caplog.text
    assert milestone_of(TrackingEvent(occurred_at=None, status_code="NY")) is None
    assert milestone_of(TrackingEvent(occurred_at=None, status_code="AT")) is None
    assert milestone_of(TrackingEvent(occurred_at=None, status_code="SP")) == "delivered"
    out = TrackingEvent(occurred_at=None, status_code="IT", status_detail_code="OUT_FOR_DELIVERY")
    assert milestone_of(out) == "out_for_delivery"


async def test_labels_bought_before_tracking_existed_are_adopted(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 20_000)
    old = await _buy(shop)
    ancient = await _buy(shop)
    await shop.mongo.db["orders"].update_many({}, {"$unset": {"tracking_due_at": ""}})
    await shop.mongo.db["orders"].update_one(
        {"_id": ancient["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=61)}}
    )
    shop.carrier.advance_tracking(str(old["label_id"]), "accepted")
    assert await _services(shop).tracking.check_due() == {"notified": 1}
    assert "tracking_due_at" in await _order(shop, old)
    assert "tracking_due_at" not in await _order(shop, ancient)  # past the 60 days


async def test_scans_at_the_same_instant_tell_the_latest_milestone(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    instant = clock()
    shop.carrier._now = lambda: instant  # the carrier reports three scans with one time
    for step in ("accepted", "in_transit", "out_for_delivery"):
        shop.carrier.advance_tracking(str(order["label_id"]), step)
    await _check(shop, clock)
    [notice] = await _deliver(shop)
    assert "is out for delivery" in notice.content
