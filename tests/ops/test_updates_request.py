"""``UpdatesRequest``: records getUpdates health, counts 409s, fences without the lease."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import Conflict, NetworkError
from telegram.request import HTTPXRequest

from bot.runner import UpdatesRequest, _polling_error, attach_updates_monitor, updates_monitor_of
from bot.web import updates_check
from sandbox.telegram import BotApiEmulator

TOKEN = "123456:OPS-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture
async def emulator() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator(TOKEN, rate_limits=False) as emu:
        yield emu


def make_bot(emu: BotApiEmulator) -> tuple[Bot, UpdatesRequest]:
    monitor = UpdatesRequest(HTTPXRequest(read_timeout=5))
    bot = Bot(
        emu.token,
        base_url=emu.base_url,
        base_file_url=emu.base_file_url,
        get_updates_request=monitor,
    )
    return bot, monitor


async def test_success_is_recorded_and_feeds_readiness(emulator: BotApiEmulator) -> None:
    bot, monitor = make_bot(emulator)
    check = updates_check(monitor, max_age_seconds=60)
    with pytest.raises(Exception, match="no getUpdates sent yet"):
        check()
    async with bot:
        poll = asyncio.create_task(bot.get_updates(timeout=3))
        await emulator.wait_until(lambda: emulator.stats.active_pollers == 1)
        assert "first getUpdates in flight" in str(check())
        monitor.first_attempt = (monitor.first_attempt or 0) - 120  # pretend: stuck
        with pytest.raises(Exception, match="no successful getUpdates in 1[0-9]{2}s"):
            check()
        emulator.add_user(7)
        emulator.send_message(7, "hi")
        updates = await poll
    assert [u.message.text for u in updates if u.message] == ["hi"]
    assert monitor.successes == 1 and monitor.conflicts == 0
    age = monitor.seconds_since_success()
    assert age is not None and age < 5
    assert "last successful getUpdates" in str(check())
    monitor.last_success = (monitor.last_success or 0) - 120  # pretend it was long ago
    with pytest.raises(Exception, match="limit 60s"):
        check()


async def test_a_second_poller_gets_the_first_a_409(emulator: BotApiEmulator) -> None:
    first, monitor = make_bot(emulator)
    second, _ = make_bot(emulator)
    async with first, second:
        poll = asyncio.create_task(first.get_updates(timeout=3))
        await emulator.wait_until(lambda: emulator.stats.active_pollers == 1)
        await second.get_updates(timeout=0)
        with pytest.raises(Conflict):
            await poll
    assert monitor.conflicts == 1
    assert emulator.stats.conflicts == 1


async def test_fenced_requests_never_reach_telegram(emulator: BotApiEmulator) -> None:
    bot, monitor = make_bot(emulator)
    held = {"value": False}
    monitor.gate = lambda: held["value"]
    async with bot:
        emulator.add_user(8)
        emulator.send_message(8, "queued")
        assert await bot.get_updates(timeout=0) == ()
        assert emulator.stats.requests.get("getUpdates", 0) == 0
        assert monitor.fenced == 1 and monitor.successes == 0
        held["value"] = True
        updates = await bot.get_updates(timeout=0)
    assert len(updates) == 1  # nothing was lost or confirmed while fenced
    assert emulator.stats.requests["getUpdates"] == 1


async def test_network_errors_are_counted(emulator: BotApiEmulator) -> None:
    bot, monitor = make_bot(emulator)
    async with bot:
        await emulator.stop()
        with pytest.raises(NetworkError):
            await bot.get_updates(timeout=0)
    assert monitor.failures == 1 and monitor.successes == 0


def test_monitor_is_found_through_bot_data() -> None:
    class Data:
        extras: dict[str, object] = {}

    data = Data()
    assert updates_monitor_of(data) is None
    monitor = UpdatesRequest(HTTPXRequest())
    attach_updates_monitor(data, monitor)
    assert updates_monitor_of(data) is monitor


def test_conflict_is_logged_as_an_incident(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.runner"):
        _polling_error(Conflict("terminated by other getUpdates request"))
        _polling_error(NetworkError("boom"))
    assert caplog.records[0].levelno == logging.ERROR
    assert caplog.records[0].getMessage().startswith("INCIDENT: Telegram answered 409")
    assert caplog.records[1].levelno == logging.WARNING
