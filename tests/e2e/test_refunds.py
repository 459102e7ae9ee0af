"""Refunds of unused labels: verdicts, the void-check job, admin review, one credit."""

from __future__ import annotations

import asyncio
from datetime import timedelta

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
