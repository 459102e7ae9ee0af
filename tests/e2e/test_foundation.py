"""End to end over real HTTP: the production application against the Bot API emulator."""

from __future__ import annotations

import asyncio
import time

import pytest
from telegram import Update
from telegram.ext import TypeHandler

from bot.harness import BotHarness
from storage.client import Mongo
from tests.conftest import ADMIN_ID, OWNER_ID, FakeClock, make_settings


@pytest.mark.parametrize(
    ("language_code", "greeting", "welcome_back"),
    [
        ("en", "Welcome, ", "Welcome back"),
        ("ru", "Добро пожаловать", "С возвращением"),
        ("uk", "Ласкаво просимо", "З поверненням"),
        ("de", "Welcome, ", "Welcome back"),
    ],
)
async def test_start_in_each_language(
    harness: BotHarness, language_code: str, greeting: str, welcome_back: str
) -> None:
    harness.add_user(101, first_name="Ann <b>", language_code=language_code)
    replies = await harness.say(101, "/start")
    assert len(replies) == 2
    assert greeting in replies[0].content
    assert "Ann <b>" in replies[0].content  # escaped in HTML, shown literally
    assert replies[1].buttons, "the main menu has buttons"
    again = await harness.say(101, "/start")
    assert welcome_back in again[0].content


async def test_language_switch_and_help(harness: BotHarness) -> None:
    harness.add_user(102, language_code="en")
    await harness.say(102, "/start")
    [choose] = await harness.say(102, "/language")
    replies = await harness.press(102, choose, "Українська")
    assert any("Мова: українська" in m.content for m in [choose, *replies])
    [help_msg] = await harness.say(102, "/help")
    assert "Як це працює" in help_msg.content
    menu = harness.last_message(102)
    replies = await harness.press(102, menu, "Допомога")
    assert "Як це працює" in replies[-1].content


async def test_cancel_outside_and_inside_a_conversation(harness: BotHarness) -> None:
    harness.add_user(103)
    [reply] = await harness.say(103, "/cancel")
    assert "nothing to cancel" in reply.content
    [topics] = await harness.say(103, "/support")
    assert "Step 1 of 2" in topics.content
    replies = await harness.say(103, "/cancel")
    assert "Cancelled" in replies[0].content
    [reply] = await harness.say(103, "hello?")
    assert "didn't understand" in reply.content


async def test_support_request_reaches_admins_through_outbox(harness: BotHarness) -> None:
    harness.add_user(104, first_name="Bob")
    harness.add_user(OWNER_ID)
    harness.add_user(ADMIN_ID)
    [topics] = await harness.say(104, "/support")
    [ask] = await harness.press(104, topics, "payment")
    assert "Step 2 of 2" in ask.content
    [done] = await harness.say(104, "Where is my <money> & stuff?")
    assert "Thank you" in done.content
    owner_msgs = await harness.emulator.wait_for_messages(OWNER_ID, 1, timeout=15)
    assert "Where is my <money> & stuff?" in owner_msgs[-1].content
    assert "Bob" in owner_msgs[-1].content


async def test_ordering_within_chat_and_concurrency_across_chats(
    mongo: Mongo, clock: FakeClock
) -> None:
    """20 messages from one user are answered in order while 200 others are served.

    Telegram's 30 messages/s applies to bulk sending; here both the emulator's and the
    bot's limiter are off so the test measures update processing, not the send rate.
    """
    tg = make_settings().telegram.model_copy(update={"overall_max_rate": 0})
    harness = BotHarness(make_settings(telegram=tg), mongo=mongo, clock=clock)
    await harness.start()
    try:
        await _ordering_scenario(harness)
    finally:
        await harness.close()


async def _ordering_scenario(harness: BotHarness) -> None:
    app = harness.application
    in_flight = 0
    peak = 0
    sleep = 0.05
    one = 201
    handled: list[str] = []

    async def slow(update: Update, context: object) -> None:
        nonlocal in_flight, peak
        if update.effective_user and update.effective_user.id == one and update.message:
            handled.append(str(update.message.text))
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(sleep)
        in_flight -= 1

    app.add_handler(TypeHandler(Update, slow), group=-1)
    harness.emulator.set_rate_limits(enabled=False)
    others = list(range(1000, 1200))
    for uid in [one, *others]:
        harness.add_user(uid)
    started = time.perf_counter()
    ids = [harness.emulator.send_message(one, f"msg {i}") for i in range(20)]
    ids += [harness.emulator.send_message(uid, "hello") for uid in others]
    await asyncio.gather(*(harness.wait_done(i, timeout=60) for i in ids))
    elapsed = time.perf_counter() - started
    assert handled == [f"msg {i}" for i in range(20)]
    assert len(harness.emulator.sent_messages(one)) == 20
    serial = 220 * sleep
    assert peak >= 20, peak
    assert elapsed < serial / 2, (elapsed, serial)
    for uid in others:
        assert len(harness.emulator.sent_messages(uid)) == 1


async def test_duplicate_update_is_skipped(harness: BotHarness) -> None:
    harness.add_user(105)
    update_id = harness.emulator.send_message(105, "/help")
    await harness.wait_done(update_id)
    raw = {
        "message_id": 999,
        "date": int(time.time()),
        "chat": {"id": 105, "type": "private", "first_name": "User"},
        "from": {"id": 105, "is_bot": False, "first_name": "User"},
        "text": "/help",
        "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
    }
    before = len(harness.emulator.sent_messages(105))
    # Telegram re-delivers an update with the same id after a restart.
    update = Update.de_json({"update_id": update_id, "message": raw}, harness.application.bot)
    await harness.application.process_update(update)
    assert len(harness.emulator.sent_messages(105)) == before


async def test_blocked_user_is_refused(harness: BotHarness) -> None:
    harness.add_user(106)
    await harness.say(106, "/start")
    await harness.mongo.db["users"].update_one({"_id": 106}, {"$set": {"blocked": True}})
    [reply] = await harness.say(106, "/support")
    assert "blocked" in reply.content
    menu = harness.emulator.sent_messages(106)[1]
    await harness.press(106, menu, "Help")
    answers = [a for a in harness.emulator.callback_answers if "blocked" in (a.text or "")]
    assert answers


async def test_maintenance_mode(harness: BotHarness) -> None:
    harness.add_user(107)
    harness.add_user(OWNER_ID)
    [topics] = await harness.say(107, "/support")
    services = harness.application.bot_data.require_services()
    await services.runtime.set_maintenance(True, "Back at 18:00 UTC.")
    [reply] = await harness.say(107, "/start")
    assert "maintenance" in reply.content and "18:00" in reply.content
    admin_replies = await harness.say(OWNER_ID, "/help")
    assert "How it works" in admin_replies[0].content
    await services.runtime.set_maintenance(False, None)
    # The conversation in progress was kept: the topic buttons still work.
    [ask] = await harness.press(107, topics, "order")
    assert "Step 2 of 2" in ask.content


async def test_restart_resumes_conversation_at_same_step(
    harness: BotHarness, mongo: Mongo
) -> None:
    harness.add_user(108)
    [topics] = await harness.say(108, "/support")
    [ask] = await harness.press(108, topics, "order")
    assert "Step 2 of 2" in ask.content
    await harness.restart()
    [done] = await harness.say(108, "My label did not arrive")
    assert "Thank you" in done.content
    alerts = await mongo.db["outbox"].find({"kind": "admin_alert"}).to_list(None)
    assert alerts and "A label or an order" in alerts[0]["text"]


async def test_expired_session_after_restart_is_told_politely(
    harness: BotHarness, clock: FakeClock
) -> None:
    harness.add_user(109)
    [topics] = await harness.say(109, "/support")
    await harness.press(109, topics, "order")
    await harness.stop()
    clock.advance(minutes=61)
    await harness.start()
    replies = await harness.say(109, "My label did not arrive")
    assert len(replies) == 1
    assert "expired after 60 minutes" in replies[0].content
    [reply] = await harness.say(109, "hello again")
    assert "didn't understand" in reply.content


async def test_expired_session_without_restart(harness: BotHarness, clock: FakeClock) -> None:
    harness.add_user(110)
    [topics] = await harness.say(110, "/support")
    await harness.flush()
    clock.advance(minutes=61)
    replies = await harness.press(110, topics, "order")
    assert "expired" in replies[0].content
    assert not any("Step 2" in m.content for m in replies)


async def test_a_full_chat_queue_drops_the_excess_with_one_notice(
    mongo: Mongo, clock: FakeClock
) -> None:
    """Ten updates of one chat arrive in one batch while the chat may queue three: three
    are answered, the rest dropped with one "slow down" notice, and every one is done for
    the inbox (none is replayed later)."""
    tg = make_settings().telegram.model_copy(update={"max_queued_per_chat": 3})
    harness = BotHarness(make_settings(telegram=tg), mongo=mongo, clock=clock, rate_limits=False)
    await harness.start()
    try:
        harness.add_user(303)
        ids = [harness.emulator.send_message(303, "/help") for _ in range(10)]
        for update_id in ids:
            await harness.wait_done(update_id)
        # Three answers and the notice (sent from its own task).
        texts = [m.content for m in await harness.emulator.wait_for_messages(303, 4)]
        assert sum("too fast" in t for t in texts) == 1
        assert sum("How it works" in t for t in texts) == 3
        inbox = harness.application.bot_data.extras["inbox"]
        await inbox.flush()
        assert await mongo.db["inbox"].count_documents({"_id": {"$in": ids}}) == 0
        claimed = await mongo.db["processed_updates"].count_documents({"_id": {"$in": ids}})
        assert claimed == 3  # the dropped ones were never handled
    finally:
        await harness.close()


async def test_flood_from_one_user_is_throttled_alone(mongo: Mongo, clock: FakeClock) -> None:
    base = make_settings()
    flood = base.flood.model_copy(update={"max_updates": 5, "window_seconds": 60})
    harness = BotHarness(make_settings(flood=flood), mongo=mongo, clock=clock, rate_limits=False)
    await harness.start()
    try:
        harness.add_user(301)
        harness.add_user(302)
        ids = [harness.emulator.send_message(301, "/help") for _ in range(30)]
        other = harness.emulator.send_message(302, "/help")
        for update_id in [*ids, other]:
            await harness.wait_done(update_id)
        texts = [m.content for m in harness.emulator.sent_messages(301)]
        assert sum("too fast" in t for t in texts) == 1
        assert sum("How it works" in t for t in texts) == 5
        assert any("How it works" in m.content for m in harness.emulator.sent_messages(302))
    finally:
        await harness.close()
