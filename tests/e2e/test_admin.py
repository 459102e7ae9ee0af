"""The admin console end to end: roles, user tools, exactly-once adjustments, maintenance,
broadcast at scale with a restart, CSV export."""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from bot.harness import BotHarness
from bot.settings import AdminEntry, Role, Settings
from sandbox.telegram import SentMessage
from storage.client import Mongo
from tests.conftest import ADMIN_ID, OWNER_ID, SUPPORT_ID, FakeClock, make_settings
from tests.e2e.shop import RECIPIENT, SENDER, ShopEnv

CUSTOMER = 5001
NOT_UNDERSTOOD = "I didn't understand that"
ROLES = {"owner": OWNER_ID, "admin": ADMIN_ID, "support": SUPPORT_ID, "customer": CUSTOMER}


@pytest.fixture
async def console(
    settings: Settings, mongo: Mongo, clock: FakeClock
) -> AsyncIterator[BotHarness]:
    h = BotHarness(settings, mongo=mongo, clock=clock, rate_limits=False)
    await h.start()
    for user_id in ROLES.values():
        h.add_user(user_id, first_name=f"U{user_id}", username=f"user{user_id}")
    await h.say(CUSTOMER, "/start")
    try:
        yield h
    finally:
        await h.close()


def storage_of(h: BotHarness) -> Any:
    return h.application.bot_data.require_storage()


async def audit_actions(mongo: Mongo) -> list[str]:
    return [doc["action"] async for doc in mongo.db["audit"].find({}).sort("at", 1)]


async def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 20.0, step: float = 0.05  # noqa: ASYNC109
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


async def double_press(h: BotHarness, user_id: int, message: SentMessage, data: str) -> None:
    """Two taps queued before the bot handles either (a real double tap)."""
    h.emulator.press_button(user_id, message.message_id, data)
    first = h.emulator.last_update_id
    h.emulator.press_button(user_id, message.message_id, data)
    second = h.emulator.last_update_id
    await h.wait_done(first)
    await h.wait_done(second)


# -- roles ----------------------------------------------------------------------------------

# command → roles that may use it (anyone else gets the normal "didn't understand" reply)
COMMANDS: dict[str, set[str]] = {
    "/admin": {"owner", "admin", "support"},
    "/audit": {"owner", "admin", "support"},
    f"/user {CUSTOMER}": {"owner", "admin", "support"},
    "/stats 7d": {"owner", "admin", "support"},
    "/export users": {"owner", "admin", "support"},
    "/payments": {"owner", "admin", "support"},
    "/refunds_review": {"owner", "admin", "support"},
    "/maintenance": {"owner", "admin"},
    "/broadcast": {"owner", "admin"},
    "/refund_credit": {"owner", "admin"},
    "/apimode": {"owner"},
}


@pytest.mark.parametrize("role", list(ROLES))
async def test_each_role_against_each_command(console: BotHarness, role: str) -> None:
    h = console
    user_id = ROLES[role]
    for command, allowed in COMMANDS.items():
        replies = await h.say(user_id, command)
        assert replies, command
        refused = any(NOT_UNDERSTOOD in m.content for m in replies)
        assert refused is (role not in allowed), (role, command, [m.content for m in replies])
        if command == "/broadcast" and role in allowed:
            await h.say(user_id, "/cancel")
        if command == "/export users" and role in allowed:
            assert any(m.document is not None for m in replies)


@pytest.mark.parametrize("role", ["support", "customer"])
async def test_refused_commands_change_nothing(
    console: BotHarness, mongo: Mongo, role: str
) -> None:
    h = console
    user_id = ROLES[role]
    for command in ("/maintenance on closed", "/apimode production"):
        replies = await h.say(user_id, command)
        assert [NOT_UNDERSTOOD in m.content for m in replies] == [True]
    runtime = h.application.bot_data.require_services().runtime
    assert (await runtime.maintenance()).enabled is False
    assert await runtime.api_mode() == "test"
    assert await audit_actions(mongo) == []


async def test_admin_may_not_switch_api_mode_but_owner_may(
    console: BotHarness, mongo: Mongo
) -> None:
    h = console
    [refused] = await h.say(ADMIN_ID, "/apimode production")
    assert NOT_UNDERSTOOD in refused.content
    [ask] = await h.say(OWNER_ID, "/apimode production")
    assert "from test to production" in ask.content.replace("\n", " ")
    data = ask.callback_data_for("Confirm")
    await double_press(h, OWNER_ID, ask, data)
    services = h.application.bot_data.require_services()
    assert await services.runtime.api_mode() == "production"
    assert "switched" in h.emulator.message(OWNER_ID, ask.message_id).content
    assert await audit_actions(mongo) == ["apimode.set"]
    answers = [a for a in h.emulator.callback_answers if a.text]
    assert any("already applied" in (a.text or "") for a in answers)
    # every admin is told, once
    alerts = await mongo.db["outbox"].count_documents({"text": {"$regex": "API mode was changed"}})
    assert alerts == 3


async def test_menu_shows_what_the_role_may_use(console: BotHarness) -> None:
    h = console
    [owner_menu] = await h.say(OWNER_ID, "/admin")
    [support_menu] = await h.say(SUPPORT_ID, "/admin")
    owner_labels = " ".join(text for text, _ in owner_menu.buttons)
    support_labels = " ".join(text for text, _ in support_menu.buttons)
    assert "Broadcast" in owner_labels and "API mode" in owner_labels
    assert "Broadcast" not in support_labels and "Maintenance" not in support_labels
    replies = await h.press(SUPPORT_ID, support_menu, "Statistics")
    assert "Statistics" in replies[-1].content
    # maintenance from the menu: status, then a toggle button
    [status] = await h.press(OWNER_ID, owner_menu, "Maintenance")
    assert "Maintenance mode: ✅ OFF" in status.content
    replies = await h.press(OWNER_ID, status, "Turn on")
    assert "Maintenance mode is ON" in replies[0].content
    runtime = h.application.bot_data.require_services().runtime
    assert (await runtime.maintenance()).enabled
    [audit] = await h.say(SUPPORT_ID, "/audit 5")
    assert "maintenance.on" in audit.content and str(OWNER_ID) in audit.content
    [usage] = await h.say(SUPPORT_ID, "/audit 500")
    assert "Usage" in usage.content


async def test_customers_turn_broadcasts_off_and_on(console: BotHarness, mongo: Mongo) -> None:
    h = console
    [state] = await h.say(CUSTOMER, "/notifications")
    assert "are <b>on</b>" in (state.source or "")
    [off] = await h.say(CUSTOMER, "/notifications off")
    assert "Notifications are off" in off.content
    user = await mongo.db["users"].find_one({"_id": CUSTOMER})
    assert user is not None and user["notify_opt_out"] is True
    await h.say(CUSTOMER, "/notifications on")
    user = await mongo.db["users"].find_one({"_id": CUSTOMER})
    assert user is not None and user["notify_opt_out"] is False


async def test_demoted_admin_pressing_an_old_button_is_refused(
    console: BotHarness, mongo: Mongo
) -> None:
    h = console
    [profile] = await h.say(ADMIN_ID, f"/user {CUSTOMER}")
    block = profile.callback_data_for("Block")
    # The owner demotes ADMIN_ID to support: a new configuration, the same database.
    h.settings = make_settings(
        admins=(
            AdminEntry(user_id=OWNER_ID, role=Role.OWNER),
            AdminEntry(user_id=ADMIN_ID, role=Role.SUPPORT),
        )
    )
    await h.restart()
    replies = await h.press(ADMIN_ID, profile, data=block)
    assert replies == []
    user = await mongo.db["users"].find_one({"_id": CUSTOMER})
    assert user is not None and user["blocked"] is False
    assert await audit_actions(mongo) == []
    [refused] = await h.say(ADMIN_ID, "/maintenance on")
    assert NOT_UNDERSTOOD in refused.content
    # removed entirely: every admin command is unknown
    h.settings = make_settings(admins=(AdminEntry(user_id=OWNER_ID, role=Role.OWNER),))
    await h.restart()
    [refused] = await h.say(ADMIN_ID, "/admin")
    assert NOT_UNDERSTOOD in refused.content


# -- /user ----------------------------------------------------------------------------------


async def test_user_lookup_block_and_discount(console: BotHarness, mongo: Mongo) -> None:
    h = console
    for query in (str(CUSTOMER), f"@user{CUSTOMER}", f"@USER{CUSTOMER}"):
        [profile] = await h.say(OWNER_ID, f"/user {query}")
        assert f"User {CUSTOMER}" in profile.content, query
    [missing] = await h.say(OWNER_ID, "/user @nobody_here")
    assert "No such user" in missing.content
    [profile] = await h.say(OWNER_ID, f"/user {CUSTOMER}")
    replies = await h.press(OWNER_ID, profile, "Block")
    assert replies == [] or all(NOT_UNDERSTOOD not in m.content for m in replies)
    edited = h.emulator.message(OWNER_ID, profile.message_id)
    assert "blocked by an admin" in edited.content
    [refused] = await h.say(CUSTOMER, "/balance")
    assert "blocked" in refused.content.lower()
    edited = h.emulator.message(OWNER_ID, profile.message_id)
    await h.press(OWNER_ID, edited, "Unblock")
    # discount
    edited = h.emulator.message(OWNER_ID, profile.message_id)
    [ask] = await h.press(OWNER_ID, edited, "Set discount")
    assert "0 to 100" in ask.content
    [bad] = await h.say(OWNER_ID, "150")
    assert "0 to 100" in bad.content
    [done] = await h.say(OWNER_ID, "15")
    assert "0% → 15%" in done.content
    user = await mongo.db["users"].find_one({"_id": CUSTOMER})
    assert user is not None and user["discount_percent"] == 15 and user["blocked"] is False
    assert await audit_actions(mongo) == ["user.block", "user.unblock", "user.discount"]
    notices = await mongo.db["outbox"].find({"chat_id": CUSTOMER}).to_list(None)
    texts = " ".join(n["text"] for n in notices)
    assert "has been blocked" in texts and "unblocked" in texts and "15%" in texts


async def test_phone_is_masked_for_support(console: BotHarness, mongo: Mongo) -> None:
    h = console
    await mongo.db["orders"].insert_one(
        {
            "_id": ObjectId(),
            "user_id": CUSTOMER,
            "status": "purchased",
            "price_cents": 1234,
            "tracking_number": "9400111899223344556677",
            "from_address": {"name": "Jane", "phone": "(212) 555-0123"},
            "to_address": {"name": "John", "phone": "(312) 555-0199"},
            "created_at": h.clock(),
        }
    )
    [for_support] = await h.say(SUPPORT_ID, "/user 9400111899223344556677")
    assert "(***) ***-**23" in for_support.content
    assert "555-0123" not in for_support.content
    assert not any("Block" in text for text, _ in for_support.buttons)
    [for_owner] = await h.say(OWNER_ID, "/user 9400111899223344556677")
    assert "(212) 555-0123" in for_owner.content


# -- balance adjustment ---------------------------------------------------------------------


async def _prepare_adjustment(h: BotHarness, amount: str, reason: str) -> SentMessage:
    [profile] = await h.say(OWNER_ID, f"/user {CUSTOMER}")
    [ask] = await h.press(OWNER_ID, profile, "Adjust balance")
    assert "Send the amount" in ask.content
    [ask_reason] = await h.say(OWNER_ID, amount)
    assert "reason" in ask_reason.content
    [confirm] = await h.say(OWNER_ID, reason)
    assert "Adjust the balance" in confirm.content
    return confirm


async def test_balance_adjustment_applies_once_per_confirmation(
    console: BotHarness, mongo: Mongo
) -> None:
    h = console
    storage = storage_of(h)
    await storage.ledger.apply(
        user_id=CUSTOMER, amount_cents=2000, kind="topup", key="seed", now=h.clock()
    )
    [profile] = await h.say(OWNER_ID, f"/user {CUSTOMER}")
    [ask] = await h.press(OWNER_ID, profile, "Adjust balance")
    [again] = await h.say(OWNER_ID, "abc")
    assert "not an amount" in again.content
    await h.say(OWNER_ID, "-5.50")
    [empty] = await h.say(OWNER_ID, "   ")
    assert "reason is required" in empty.content.lower() or "reason" in empty.content
    [confirm] = await h.say(OWNER_ID, "goodwill <correction>")
    assert "−$5.50" in confirm.content and "goodwill <correction>" in confirm.content
    assert await mongo.db["ledger"].count_documents({"kind": "adjustment"}) == 0
    data = confirm.callback_data_for("Confirm")
    await double_press(h, OWNER_ID, confirm, data)

    entries = await mongo.db["ledger"].find({"kind": "adjustment"}).to_list(None)
    cid = data.rsplit(":", 1)[-1]
    assert [(e["_id"], e["amount_cents"]) for e in entries] == [(f"adjustment:{cid}", -550)]
    assert entries[0]["meta"]["reason"] == "goodwill <correction>"
    user = await mongo.db["users"].find_one({"_id": CUSTOMER})
    assert user is not None and user["balance_cents"] == 1450
    assert await audit_actions(mongo) == ["balance.adjust"]
    audit = await mongo.db["audit"].find_one({"action": "balance.adjust"})
    assert audit is not None and audit["actor"] == OWNER_ID
    assert audit["before"] == {"balance_cents": 2000}
    assert audit["after"]["balance_cents"] == 1450
    notices = await mongo.db["outbox"].count_documents(
        {"chat_id": CUSTOMER, "text": {"$regex": "debited"}}
    )
    assert notices == 1
    assert "New balance: $14.50" in h.emulator.message(OWNER_ID, confirm.message_id).content
    _, mismatches = await storage.ledger.audit()
    assert mismatches == []

    # a positive one, and a debit beyond the balance is refused with nothing changed
    credit = await _prepare_adjustment(h, "+10", "compensation for delay")
    await h.press(OWNER_ID, credit, "Confirm")
    debit = await _prepare_adjustment(h, "-100", "typo")
    await h.press(OWNER_ID, debit, "Confirm")
    refused = h.emulator.message(OWNER_ID, debit.message_id)
    assert "Refused" in refused.content and "$24.50" in refused.content
    user = await mongo.db["users"].find_one({"_id": CUSTOMER})
    assert user is not None and user["balance_cents"] == 2450
    assert await mongo.db["ledger"].count_documents({"kind": "adjustment"}) == 2
    _, mismatches = await storage.ledger.audit()
    assert mismatches == []


async def test_cancelled_or_expired_confirmation_moves_nothing(
    console: BotHarness, mongo: Mongo, clock: FakeClock
) -> None:
    h = console
    cancel = await _prepare_adjustment(h, "7", "test")
    await h.press(OWNER_ID, cancel, "Cancel")
    assert "Cancelled" in h.emulator.message(OWNER_ID, cancel.message_id).content
    stale = await _prepare_adjustment(h, "7", "test")
    clock.advance(minutes=16)
    await h.press(OWNER_ID, stale, "Confirm")
    assert any("expired" in (a.text or "") for a in h.emulator.callback_answers)
    assert await mongo.db["ledger"].count_documents({"kind": "adjustment"}) == 0


# -- maintenance ----------------------------------------------------------------------------


async def test_maintenance_keeps_drafts_and_serves_admins(shop: ShopEnv, mongo: Mongo) -> None:
    h = shop.harness
    customer = 7001
    [ask] = await h.say(customer, "/order")
    assert "Step 1 of 6" in ask.content
    replies = await h.say(customer, SENDER)
    assert "Step 2 of 6" in replies[-1].content

    on = await h.say(OWNER_ID, "/maintenance on Back at 18:00 UTC")
    assert "Maintenance mode is ON" in on[0].content
    assert "Broadcast queued" in on[1].content  # becomes the progress message
    [refused] = await h.say(customer, RECIPIENT)
    assert "under maintenance" in refused.content and "Back at 18:00 UTC" in refused.content
    [stats] = await h.say(OWNER_ID, "/stats")
    assert "Statistics" in stats.content
    # customers are told through a broadcast
    await wait_for(
        lambda: any(
            "Back at 18:00" in m.content and m.method == "sendMessage"
            for m in h.emulator.sent_messages(customer)[-3:]
        )
    )

    off = await h.say(OWNER_ID, "/maintenance off")
    assert "OFF" in off[0].content
    await wait_for(
        lambda: any("Maintenance is over" in m.content for m in h.emulator.sent_messages(customer))
    )
    replies = await h.say(customer, RECIPIENT)
    assert "Step 3 of 6" in replies[-1].content  # the draft survived, same step
    actions = await audit_actions(mongo)
    assert actions.count("maintenance.on") == 1 and actions.count("maintenance.off") == 1


# -- export ---------------------------------------------------------------------------------


async def test_export_orders_csv_with_masked_phones_for_support(
    console: BotHarness, mongo: Mongo
) -> None:
    h = console
    now = h.clock()
    docs = [
        {
            "_id": ObjectId(),
            "user_id": CUSTOMER,
            "status": "purchased",
            "price_cents": 1000 + i,
            "carrier_cost_cents": 800,
            "tracking_number": f"TRK{i:06d}",
            "from_address": {"name": "=HYPERLINK(1)", "city": "NY", "phone": "(212) 555-0123"},
            "to_address": {"name": "John", "city": "LA", "phone": "+1 312 555 0199"},
            "created_at": now - timedelta(minutes=i),
            "purchased_at": now,
        }
        for i in range(300)
    ]
    docs.append({**docs[0], "_id": ObjectId(), "status": "draft"})  # drafts are not exported
    await mongo.db["orders"].insert_many(docs)
    day = now.date().isoformat()
    replies = await h.say(SUPPORT_ID, f"/export orders 2000-01-01 {day}")
    [document] = [m for m in replies if m.document is not None]
    assert "300 rows" in document.content
    rows = list(csv.DictReader(io.StringIO(document.document.data.decode())))  # type: ignore[union-attr]
    assert len(rows) == 300
    assert {r["from_phone"] for r in rows} == {"(***) ***-**23"}
    assert {r["to_phone"] for r in rows} == {"+* *** *** **99"}
    assert rows[0]["from_name"] == "'=HYPERLINK(1)"  # no formula injection
    assert rows[-1]["price_usd"] == "10.00" and rows[0]["price_usd"] == "12.99"

    replies = await h.say(OWNER_ID, "/export orders")
    [document] = [m for m in replies if m.document is not None]
    rows = list(csv.DictReader(io.StringIO(document.document.data.decode())))  # type: ignore[union-attr]
    assert {r["from_phone"] for r in rows} == {"(212) 555-0123"}
    [bad] = await h.say(OWNER_ID, "/export orders 2024-13-01")
    assert "YYYY-MM-DD" in bad.content
    audits = await mongo.db["audit"].find({"action": "export.orders"}).to_list(None)
    assert [(a["actor"], a["after"]["rows"], a["after"]["phones_masked"]) for a in audits] == [
        (SUPPORT_ID, 300, True),
        (OWNER_ID, 300, False),
    ]


# -- broadcast ------------------------------------------------------------------------------

AUDIENCE = 2000
FIRST_ID = 100_000


async def make_crowd(
    mongo: Mongo, clock: FakeClock, size: int, *, short_lease: bool = False
) -> BotHarness:
    """``size`` sandbox customers; the emulator's limits are ON.

    Production caps ``broadcast.rate_per_second`` at 30 (settings validation, see
    ``tests/services/test_broadcast.py``). To keep these tests fast the emulator's overall
    bucket and the bot's rate are raised together (300 vs 250 per second) through a
    test-only override that bypasses validation; the per-chat rule is unchanged. The
    full-size run at 30/s belongs in ``bench/``.
    """
    base = make_settings()
    poller = base.poller
    if short_lease:  # a killed worker never releases its lease: let it lapse quickly
        poller = poller.model_copy(update={"lease_seconds": 0.9, "renew_seconds": 0.3})
    settings = make_settings(
        telegram=base.telegram.model_copy(update={"overall_max_rate": 300}),
        broadcast=base.broadcast.model_copy(
            update={"rate_per_second": 250, "interval_seconds": 0.5, "max_concurrency": 16}
        ),
        poller=poller,
    )
    h = BotHarness(settings, mongo=mongo, clock=clock, rate_limits=True)
    h.emulator.set_rate_limits(enabled=True, overall_capacity=300, overall_rate=300)
    await h.start()
    h.add_user(OWNER_ID)
    now = clock()
    users = []
    for uid in range(FIRST_ID, FIRST_ID + size):
        h.add_user(uid)
        users.append(
            {
                "_id": uid,
                "language": "en",
                "balance_cents": 0,
                "blocked": False,
                "notify_opt_out": False,
                "bot_blocked_at": None,
                "created_at": now,
                "last_seen_at": now,
            }
        )
    await mongo.db["users"].insert_many(users)
    return h


@pytest.fixture
async def crowd(mongo: Mongo, clock: FakeClock) -> AsyncIterator[BotHarness]:
    h = await make_crowd(mongo, clock, AUDIENCE)
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
async def small_crowd(mongo: Mongo, clock: FakeClock) -> AsyncIterator[BotHarness]:
    h = await make_crowd(mongo, clock, 400, short_lease=True)
    try:
        yield h
    finally:
        await h.close()


async def start_broadcast(h: BotHarness, text: str) -> SentMessage:
    await h.say(OWNER_ID, "/broadcast")
    replies = await h.say(OWNER_ID, text)
    assert replies[1].content == text  # the preview, exactly as customers will see it
    confirm = replies[-1]
    # The admin reads the preview: composing sent 4 messages into this chat at test speed,
    # more than its per-chat burst, so let the chat's bucket refill before confirming.
    await asyncio.sleep(3)
    h.emulator.reset_stats()
    await h.press(OWNER_ID, confirm, "Send to all")
    return confirm


async def test_broadcast_to_2000_users_with_a_restart_halfway(
    crowd: BotHarness, mongo: Mongo, clock: FakeClock
) -> None:
    h = crowd
    ids = list(range(FIRST_ID, FIRST_ID + AUDIENCE))
    blocked = set(ids[::20])  # 5 % blocked the bot (Telegram answers 403)
    for uid in blocked:
        h.emulator.block_chat(uid, notify=False)
    opted_out = set(ids[1::100])  # /notifications off
    already_marked = set(ids[2::100])  # known to have blocked the bot
    await mongo.db["users"].update_many(
        {"_id": {"$in": list(opted_out)}}, {"$set": {"notify_opt_out": True}}
    )
    await mongo.db["users"].update_many(
        {"_id": {"$in": list(already_marked)}}, {"$set": {"bot_blocked_at": clock()}}
    )
    text = "Big news: labels are 10% off this week!"
    confirm = await start_broadcast(h, text)

    deliveries = mongo.db["broadcast_deliveries"]
    await wait_for(lambda: _count(deliveries, "sent", AUDIENCE // 2))
    await h.restart()  # stop mid-delivery: in-flight sends finish, claims go back
    sent_at_restart = await deliveries.count_documents({"status": "sent"})
    assert 0 < sent_at_restart < AUDIENCE

    broadcasts = mongo.db["broadcasts"]
    await wait_for(lambda: _status_is(broadcasts, "done"), timeout=60)
    expected = set(ids) - blocked - opted_out - already_marked
    for uid in ids:
        copies = [m for m in h.emulator.sent_messages(uid) if m.content == text]
        assert len(copies) == (1 if uid in expected else 0), uid
    assert [m.content for m in h.emulator.sent_messages(OWNER_ID) if m.content == text] == [
        text,
        text,  # the preview, and the owner's own copy as a user
    ]
    stats = h.emulator.stats
    assert stats.rate_limits_enabled and stats.rate_limited == 0, stats.rate_limited_by_chat
    counts = {
        status: await deliveries.count_documents({"status": status})
        for status in ("pending", "claimed", "sending", "sent", "failed", "skipped")
    }
    newly_blocked = blocked - opted_out - already_marked
    assert counts == {
        "pending": 0,
        "claimed": 0,
        "sending": 0,
        "sent": len(expected) + 1,
        "failed": len(newly_blocked),
        "skipped": len(opted_out | already_marked),
    }
    marked = await mongo.db["users"].count_documents(
        {"_id": {"$in": list(newly_blocked)}, "bot_blocked_at": {"$ne": None}}
    )
    assert marked == len(newly_blocked)
    await wait_for(
        lambda: "finished" in h.emulator.message(OWNER_ID, confirm.message_id).content
    )
    progress = h.emulator.message(OWNER_ID, confirm.message_id)
    assert f"sent {len(expected) + 1} · failed {len(newly_blocked)}" in progress.content
    assert len(progress.history) >= 3  # queued → progress … → finished, one message edited


async def _count(collection: Any, status: str, at_least: int) -> bool:
    return bool(await collection.count_documents({"status": status}) >= at_least)


async def _status_is(collection: Any, status: str) -> bool:
    doc = await collection.find_one({})
    return bool(doc and doc["status"] == status)


async def test_broadcast_crash_never_sends_twice(
    small_crowd: BotHarness, mongo: Mongo, clock: FakeClock
) -> None:
    """kill -9 mid-delivery: sends in flight may be lost, none is ever repeated."""
    h = small_crowd
    text = "Crash-safe news"
    await start_broadcast(h, text)
    deliveries = mongo.db["broadcast_deliveries"]
    await wait_for(lambda: _count(deliveries, "sent", 100))
    await h.crash()
    in_flight = await deliveries.count_documents({"status": "sending"})
    assert in_flight <= 16  # at most max_concurrency sends can be lost
    await h.start()  # a new process on the same database and Bot API
    clock.advance(minutes=6)  # the orphaned claims are recognised as such
    await wait_for(lambda: _status_is(mongo.db["broadcasts"], "done"), timeout=60)
    by_status: dict[str, set[int]] = {}
    async for doc in deliveries.find({}):
        by_status.setdefault(doc["status"], set()).add(doc["user_id"])
    assert set(by_status) <= {"sent", "failed"}
    for uid in range(FIRST_ID, FIRST_ID + 400):
        copies = sum(m.content == text for m in h.emulator.sent_messages(uid))
        if uid in by_status.get("sent", set()):
            assert copies == 1, uid
        else:  # interrupted mid-send: delivered or not, but never twice
            assert copies <= 1, uid
    interrupted = await deliveries.count_documents({"reason": "interrupted"})
    assert interrupted == in_flight
    # The killed application's objects are garbage now; finalise them here rather than in
    # the middle of a later compile() (CPython 3.11.7 then fails with "AST constructor
    # recursion depth mismatch").
    gc.collect()
