"""Refunds of unused labels: verdicts, the void-check job, admin review, one credit."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, timedelta

import pytest
from babel.dates import format_date

from providers.errors import ProviderUnavailable
from tests.conftest import OWNER_ID, FakeClock
from tests.e2e.shop import USER, ShopEnv, pay_button

OTHER = 7002


async def _buy(shop: ShopEnv, user_id: int = USER) -> dict[str, object]:
    assert isinstance(shop.harness.clock, FakeClock)
    shop.harness.clock.advance(minutes=1)  # distinct creation times, newest first
    summary = await shop.to_summary(user_id)
    await shop.harness.press(user_id, summary, data=pay_button(summary))
    orders = (
        await shop.mongo.db["orders"]
        .find({"user_id": user_id, "status": "purchased"})
        .sort("created_at", -1)
        .to_list(None)
    )
    return dict(orders[0])


async def _age(shop: ShopEnv, order: dict[str, object], days: float, clock: FakeClock) -> None:
    await shop.mongo.db["orders"].update_one(
        {"_id": order["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=days)}}
    )


def _services(shop: ShopEnv):  # type: ignore[no-untyped-def]
    return shop.harness.application.bot_data.require_services()


async def test_batch_gives_a_verdict_per_number(shop: ShopEnv, clock: FakeClock) -> None:
    await shop.fund(USER, 50_000)
    shop.harness.add_user(OTHER)
    await shop.harness.say(OTHER, "/start")
    await shop.fund(OTHER, 50_000)
    valid = await _buy(shop)
    recent = await _buy(shop)
    old = await _buy(shop)
    foreign = await _buy(shop, OTHER)
    await _age(shop, valid, 6, clock)
    await _age(shop, old, 31, clock)
    await _age(shop, foreign, 6, clock)
    text = "\n".join(
        [
            str(valid["tracking_number"]),
            f"{valid['tracking_number']}, {recent['tracking_number']}",
            f"{old['tracking_number']} {foreign['tracking_number']}",
            "9400000000000000000000",
        ]
    )
    h = shop.harness
    await h.say(USER, "/refund")
    [reply] = await h.say(USER, text)
    lines = reply.content.splitlines()
    assert sum(1 for line in lines if str(valid["tracking_number"]) in line) == 1
    assert f"{valid['tracking_number']}: accepted" in reply.content
    assert f"{recent['tracking_number']}: too recent" in reply.content
    assert f"{old['tracking_number']}: too old" in reply.content
    assert f"{foreign['tracking_number']}: not found in your account" in reply.content
    assert "9400000000000000000000: not found" in reply.content
    assert "Accepted: 1" in reply.content
    # Asking again: already requested.
    await h.say(USER, "/refund")
    [again] = await h.say(USER, str(valid["tracking_number"]))
    assert "already requested" in again.content


async def test_job_voids_and_credits_once_even_when_run_twice(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    before = await shop.balance()
    verdict = await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    assert verdict.verdict == "accepted"
    shop.carrier.set_void_outcome("approved")
    results = await asyncio.gather(
        _services(shop).refunds.process_due(), _services(shop).refunds.process_due()
    )
    assert sum(r.get("credited", 0) for r in results) == 1
    assert await shop.balance() == before + order["price_cents"]
    refunds = await shop.mongo.db["ledger"].find({"kind": "refund"}).to_list(None)
    assert len(refunds) == 1
    stored = await shop.mongo.db["orders"].find_one({"_id": order["_id"]})
    assert stored is not None and stored["status"] == "refunded"
    await shop.harness.emulator.wait_until(
        lambda: any(
            "Refund credited" in m.content for m in shop.harness.emulator.sent_messages(USER)
        ),
        timeout=15,
    )
    await shop.audit_ok()


async def test_crash_between_void_and_credit_is_finished_once(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    # The label was voided and the request approved, then the process died.
    await shop.mongo.db["refunds"].update_one(
        {"order_id": order["_id"]}, {"$set": {"status": "approved"}}
    )
    counts = await _services(shop).refunds.process_due()
    assert counts == {"credited": 1}
    assert await _services(shop).refunds.process_due() == {}
    assert len(await shop.mongo.db["ledger"].find({"kind": "refund"}).to_list(None)) == 1
    await shop.audit_ok()


async def test_voiding_claim_lost_by_crash_is_retried_after_lease(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    await shop.mongo.db["refunds"].update_one(
        {"order_id": order["_id"]}, {"$set": {"status": "voiding", "voiding_at": clock()}}
    )
    shop.carrier.set_void_outcome("approved")
    assert await _services(shop).refunds.process_due() == {}
    clock.advance(seconds=301)
    assert await _services(shop).refunds.process_due() == {"credited": 1}
    await shop.audit_ok()


async def test_used_label_is_rejected_and_customer_told(shop: ShopEnv, clock: FakeClock) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    shop.carrier.set_void_outcome("label_already_used")
    assert await _services(shop).refunds.process_due() == {"rejected": 1}
    [listing] = await shop.harness.say(USER, "/myrefunds")
    assert "rejected: the label was already used" in listing.content
    await shop.audit_ok()


async def test_carrier_errors_end_in_review_with_one_alert(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    shop.carrier.set_void_outcome("unknown")
    outcomes = []
    for _ in range(5):
        outcomes.append(await _services(shop).refunds.process_due())
        clock.advance(hours=3)
    assert outcomes[-1] == {"needs_review": 1}
    alerts = await shop.mongo.db["outbox"].find({"text": {"$regex": "needs review"}}).to_list(None)
    assert len(alerts) == 3  # one alert, sent to each of the three admins once
    assert len({a["chat_id"] for a in alerts}) == 3
    await shop.audit_ok()


async def test_admin_and_job_race_credits_once_and_reject_after_credit_refused(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    refund = await shop.mongo.db["refunds"].find_one({"order_id": order["_id"]})
    assert refund is not None
    shop.carrier.set_void_outcome("approved")
    rid = str(refund["_id"])
    h = shop.harness
    await asyncio.gather(
        _services(shop).refunds.process_due(), h.say(OWNER_ID, f"/refund_approve {rid}")
    )
    assert len(await shop.mongo.db["ledger"].find({"kind": "refund"}).to_list(None)) == 1
    [answer] = await h.say(OWNER_ID, f"/refund_reject {rid} changed my mind")
    assert "not_allowed:credited" in answer.content
    await shop.audit_ok()


async def test_refund_button_on_my_labels(shop: ShopEnv, clock: FakeClock) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    [labels] = await shop.harness.say(USER, "/labels")
    replies = await shop.harness.press(USER, labels, data=f"rf:one:{order['_id']}")
    assert "accepted" in replies[-1].content


# -- an admin's approval voids the label first ------------------------------------------


async def _requested(shop: ShopEnv, clock: FakeClock) -> tuple[dict[str, object], str]:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    await _age(shop, order, 6, clock)
    verdict = await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    assert verdict.verdict == "accepted"
    refund = await shop.mongo.db["refunds"].find_one({"order_id": order["_id"]})
    assert refund is not None
    return order, str(refund["_id"])


async def _refund_entries(shop: ShopEnv) -> list[dict[str, object]]:
    return await shop.mongo.db["ledger"].find({"kind": "refund"}).to_list(None)


async def _audit_actions(shop: ShopEnv) -> list[str]:
    return [doc["action"] async for doc in shop.mongo.db["audit"].find({}).sort("at", 1)]


async def test_admin_approval_voids_the_label_then_credits(
    shop: ShopEnv, clock: FakeClock
) -> None:
    order, rid = await _requested(shop, clock)
    before = await shop.balance()
    shop.carrier.set_void_outcome("approved")
    [answer] = await shop.harness.say(OWNER_ID, f"/refund_approve {rid}")
    assert "the carrier voided label" in answer.content
    assert shop.carrier.labels[str(order["label_id"])].voided  # no longer usable
    assert await shop.balance() == before + order["price_cents"]
    assert len(await _refund_entries(shop)) == 1
    assert await _audit_actions(shop) == ["refund.approve"]
    await shop.audit_ok()


async def test_carrier_refusal_after_admin_approval_credits_nothing_and_tells_the_admin(
    shop: ShopEnv, clock: FakeClock
) -> None:
    order, rid = await _requested(shop, clock)
    before = await shop.balance()
    shop.carrier.set_void_outcome("label_already_used")
    [answer] = await shop.harness.say(OWNER_ID, f"/refund_approve {rid}")
    assert "refused to void" in answer.content
    assert "the label was already used" in answer.content  # the carrier's reason
    assert "Nothing was credited" in answer.content
    assert await shop.balance() == before and await _refund_entries(shop) == []
    refund = await shop.mongo.db["refunds"].find_one({"order_id": order["_id"]})
    assert refund is not None and refund["status"] == "needs_review"
    assert refund["void_refusal"] == "label_already_used"
    # The answer offers the two ways on: rejecting tells the customer.
    replies = await shop.harness.press(OWNER_ID, answer, "Reject")
    assert "rejected" in replies[-1].content
    assert await shop.balance() == before and await _refund_entries(shop) == []
    assert await _audit_actions(shop) == ["refund.approve", "refund.reject"]
    await shop.audit_ok()


async def test_carrier_outage_after_admin_approval_is_retried_by_the_job_not_credited(
    shop: ShopEnv, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, rid = await _requested(shop, clock)
    before = await shop.balance()
    gateway = _services(shop).refunds._gateway
    real_void = gateway.void

    async def down(mode: str, label_id: str) -> object:
        raise ProviderUnavailable("shipstation", "connection refused", operation="void_label")

    monkeypatch.setattr(gateway, "void", down)
    [answer] = await shop.harness.say(OWNER_ID, f"/refund_approve {rid}")
    assert "the carrier is unavailable" in answer.content
    assert await shop.balance() == before and await _refund_entries(shop) == []
    refund = await shop.mongo.db["refunds"].find_one({"order_id": order["_id"]})
    assert refund is not None and refund["status"] == "requested"
    # Still down at the job's next run: still nothing credited.
    clock.advance(minutes=10)
    assert await _services(shop).refunds.process_due() == {"retry": 1}
    assert await shop.balance() == before
    # The carrier is back: the job voids the label, then credits.
    monkeypatch.setattr(gateway, "void", real_void)
    shop.carrier.set_void_outcome("approved")
    clock.advance(minutes=20)
    assert await _services(shop).refunds.process_due() == {"credited": 1}
    assert shop.carrier.labels[str(order["label_id"])].voided
    assert await shop.balance() == before + order["price_cents"]
    await shop.audit_ok()


async def test_job_refusal_of_an_admin_approved_void_goes_back_to_the_admins(
    shop: ShopEnv, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, rid = await _requested(shop, clock)
    before = await shop.balance()
    gateway = _services(shop).refunds._gateway
    real_void = gateway.void

    async def down(mode: str, label_id: str) -> object:
        raise ProviderUnavailable("shipstation", "timeout", operation="void_label")

    monkeypatch.setattr(gateway, "void", down)
    await shop.harness.say(OWNER_ID, f"/refund_approve {rid}")
    monkeypatch.setattr(gateway, "void", real_void)
    shop.carrier.set_void_outcome("label_not_found_within_void_period")
    clock.advance(minutes=10)
    assert await _services(shop).refunds.process_due() == {"void_refused": 1}
    assert await shop.balance() == before and await _refund_entries(shop) == []
    alerts = await shop.mongo.db["outbox"].find({"text": {"$regex": "Void refused"}}).to_list(None)
    assert len(alerts) == 3  # each admin once, with the carrier's reason
    assert all("outside the carrier's void period" in a["text"] for a in alerts)
    # The customer was not told it was rejected: the admins decide.
    notices = await shop.mongo.db["outbox"].find({"chat_id": USER}).to_list(None)
    assert not any("rejected" in n["text"] for n in notices)
    await shop.audit_ok()


async def test_credit_without_void_is_confirmed_audited_and_applied_once(
    shop: ShopEnv, clock: FakeClock
) -> None:
    order, rid = await _requested(shop, clock)
    before = await shop.balance()
    shop.carrier.set_void_outcome("label_already_used")
    h = shop.harness
    [answer] = await h.say(OWNER_ID, f"/refund_approve {rid}")
    [ask] = await h.press(OWNER_ID, answer, "Credit without void")
    assert "not voided" in ask.content
    assert await shop.balance() == before  # nothing moves before the confirmation
    data = ask.callback_data_for("Confirm")
    h.emulator.press_button(OWNER_ID, ask.message_id, data)
    first = h.emulator.last_update_id
    h.emulator.press_button(OWNER_ID, ask.message_id, data)  # a double tap
    second = h.emulator.last_update_id
    await h.wait_done(first)
    await h.wait_done(second)
    assert "without voiding label" in h.emulator.message(OWNER_ID, ask.message_id).content
    assert await shop.balance() == before + order["price_cents"]
    assert len(await _refund_entries(shop)) == 1
    assert await _audit_actions(shop) == ["refund.approve", "refund.credit_without_void"]
    assert not shop.carrier.labels[str(order["label_id"])].voided
    refund = await shop.mongo.db["refunds"].find_one({"order_id": order["_id"]})
    assert refund is not None and refund["status"] == "credited"
    assert refund["credited_without_void"] is True
    # A second confirmation for the same refund changes nothing.
    [again] = await h.say(OWNER_ID, f"/refund_credit {rid}")
    assert "not_allowed:credited" in again.content
    await h.emulator.wait_until(
        lambda: any("Refund credited" in m.content for m in h.emulator.sent_messages(USER)),
        timeout=15,
    )
    await shop.audit_ok()


# -- the refund window: 28 days, its last day shown ------------------------------------


def _day(day: date) -> str:
    return format_date(day, "long", locale="en")


async def test_last_refund_day_is_shown_after_purchase(shop: ShopEnv, clock: FakeClock) -> None:
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    purchased = shop.harness.emulator.sent_messages(USER)
    [bought] = [m for m in purchased if "Label bought" in m.content]
    purchase_day = order["purchased_at"].astimezone(UTC).date()  # type: ignore[attr-defined]
    last_day = purchase_day + timedelta(days=27)
    assert f"to the end of {_day(last_day)} (UTC)" in bought.content
    assert f"from {_day(purchase_day + timedelta(days=6))}" in bought.content


async def test_refund_window_ends_with_its_last_day_within_28_days(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 50_000)
    last_day_order = await _buy(shop)
    closed_order = await _buy(shop)
    now = clock()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Bought 27 days ago (the same time of day): today is its last refund day.
    await shop.mongo.db["orders"].update_one(
        {"_id": last_day_order["_id"]}, {"$set": {"purchased_at": now - timedelta(days=27)}}
    )
    # Bought on the day 28 days ago, one second after midnight: its window closed at midnight.
    await shop.mongo.db["orders"].update_one(
        {"_id": closed_order["_id"]},
        {"$set": {"purchased_at": midnight - timedelta(days=28) + timedelta(seconds=1)}},
    )
    refunds = _services(shop).refunds
    assert (await refunds.request_for_order(USER, str(last_day_order["_id"]))).verdict == (
        "accepted"
    )
    assert (await refunds.request_for_order(USER, str(closed_order["_id"]))).verdict == "too_old"


async def test_my_labels_offers_refund_only_where_the_rules_accept(
    shop: ShopEnv, clock: FakeClock
) -> None:
    await shop.fund(USER, 50_000)
    recent = await _buy(shop)
    open_ = await _buy(shop)
    requested = await _buy(shop)
    old = await _buy(shop)
    await _age(shop, open_, 6, clock)
    await _age(shop, requested, 6, clock)
    await _age(shop, old, 29, clock)
    await _services(shop).refunds.request_for_order(USER, str(requested["_id"]))
    [labels] = await shop.harness.say(USER, "/labels")
    offered = {data for _, data in labels.buttons if data and data.startswith("rf:one:")}
    assert offered == {f"rf:one:{open_['_id']}"}
    open_day = (clock() - timedelta(days=6)).astimezone(UTC).date() + timedelta(days=27)
    assert f"Refund possible until the end of {_day(open_day)} (UTC)" in labels.content
    recent_day = recent["purchased_at"].astimezone(UTC).date()  # type: ignore[attr-defined]
    assert f"to the end of {_day(recent_day + timedelta(days=27))}" in labels.content
    assert labels.content.count("Refund possible") == 2  # not for the requested or old one
