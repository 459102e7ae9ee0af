"""Start-up while MongoDB or Telegram is down: retried in-process with a bounded, logged
backoff, so supervisord (``startsecs``) sees a running process instead of a crash loop.

The sleep is injected: the tests record the delays instead of waiting them out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from bot.application import BotApplication, build_application, build_storage
from bot.harness import SANDBOX_TOKEN
from bot.runner import (
    StartupFailed,
    StartupRetry,
    abandon_start,
    run_until_signalled,
    start_application,
    stop_application,
    wait_for_dependencies,
)
from bot.settings import Settings
from sandbox.telegram import BotApiEmulator
from storage.client import Mongo
from tests.conftest import make_settings

RETRY = StartupRetry(initial_delay=1.0, max_delay=4.0, max_attempts=10)


class FlakyMongo(Mongo):
    """The in-memory database behind a server that is unreachable for the first
    ``failures`` pings (``None``: for ever), as PyMongo reports it."""

    def __init__(self, failures: int | None, *, error: Exception | None = None) -> None:
        memory = Mongo.memory("startup_test")
        super().__init__(memory.client, "startup_test", in_memory=True)
        self.failures = failures
        self.error = error
        self.pings = 0

    async def ping(self) -> bool:
        self.pings += 1
        if self.failures is None or self.pings <= self.failures:
            raise self.error or ServerSelectionTimeoutError(
                "db1:27017: [Errno 111] Connection refused, Timeout: 3.0s"
            )
        return True


class Sleeps:
    """Records each delay; ``on_sleep`` runs after the n-th one (1-based)."""

    def __init__(self, on_sleep: dict[int, Callable[[], Awaitable[None]]] | None = None) -> None:
        self.delays: list[float] = []
        self._on_sleep = on_sleep or {}

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        action = self._on_sleep.get(len(self.delays))
        if action is not None:
            await action()


@pytest.fixture
async def emulator() -> AsyncIterator[BotApiEmulator]:
    emu = BotApiEmulator(SANDBOX_TOKEN, rate_limits=False)
    yield emu
    await emu.stop()


def _settings(telegram_url: str) -> Settings:
    settings = make_settings()
    return settings.model_copy(
        update={
            "telegram": settings.telegram.model_copy(
                update={
                    "base_url": f"{telegram_url}/bot",
                    "base_file_url": f"{telegram_url}/file/bot",
                }
            ),
            "poller": settings.poller.model_copy(update={"enabled": False}),
        }
    )


def _app(settings: Settings, mongo: Mongo, *, token: str = SANDBOX_TOKEN) -> BotApplication:
    storage = build_storage(settings, "mongomock://", client=mongo)
    return build_application(settings, storage, token=token)


async def _answers_start(app: BotApplication, emulator: BotApiEmulator) -> None:
    """The application starts and answers a customer: start-up really completed."""
    await start_application(app, poll_timeout=1)
    try:
        mark = emulator.cursor(4242)
        emulator.send_message(4242, "/start")
        [reply] = await emulator.wait_for_messages(4242, 1, since=mark, timeout=10)
        assert reply.text
    finally:
        await stop_application(app)


def _retry_lines(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.runner" and what in r.getMessage() and "retrying in" in r.getMessage()
    ]


async def test_mongodb_down_at_start_is_retried_with_backoff(
    emulator: BotApiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    await emulator.start()
    mongo = FlakyMongo(failures=4)
    app = _app(_settings(emulator.url), mongo)
    sleeps = Sleeps()
    caplog.set_level(logging.INFO, logger="bot.runner")

    assert await wait_for_dependencies(app, RETRY, sleep=sleeps) is True

    assert sleeps.delays == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at max_delay
    assert mongo.pings == 5
    lines = _retry_lines(caplog, "MongoDB")
    assert len(lines) == 4
    assert "attempt 1/10" in lines[0] and "ServerSelectionTimeoutError" in lines[0]
    await _answers_start(app, emulator)


async def test_telegram_5xx_for_getme_at_start_is_retried(
    emulator: BotApiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    await emulator.start()
    emulator.fail_requests("getMe", 2, status=502)
    app = _app(_settings(emulator.url), Mongo.memory("startup_test"))
    sleeps = Sleeps()
    caplog.set_level(logging.INFO, logger="bot.runner")

    assert await wait_for_dependencies(app, RETRY, sleep=sleeps) is True

    assert sleeps.delays == [1.0, 2.0]
    assert emulator.stats.requests["getMe"] == 3
    assert len(_retry_lines(caplog, "Telegram")) == 2
    await _answers_start(app, emulator)


async def test_telegram_refusing_connections_at_start_is_retried(
    emulator: BotApiEmulator,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on until the emulator starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def telegram_comes_back() -> None:
        await emulator.start(port=port)

    app = _app(_settings(f"http://127.0.0.1:{port}"), Mongo.memory("startup_test"))
    sleeps = Sleeps(on_sleep={3: telegram_comes_back})

    assert await wait_for_dependencies(app, RETRY, sleep=sleeps) is True

    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert emulator.stats.requests["getMe"] == 1
    await _answers_start(app, emulator)


async def test_the_retries_are_bounded(emulator: BotApiEmulator) -> None:
    await emulator.start()
    mongo = FlakyMongo(failures=None)
    app = _app(_settings(emulator.url), mongo)
    sleeps = Sleeps()
    retry = StartupRetry(initial_delay=1.0, max_delay=30.0, max_attempts=3)

    with pytest.raises(StartupFailed) as caught:
        await wait_for_dependencies(app, retry, sleep=sleeps)

    assert sleeps.delays == [1.0, 2.0]
    assert mongo.pings == 3
    message = str(caught.value)
    assert "\n" not in message
    assert "MongoDB" in message and "3 attempts" in message
    assert not caught.value.config_error  # an outage: supervisord may start it again
    assert emulator.stats.requests.get("getMe", 0) == 0  # Telegram is not tried before MongoDB


async def test_a_rejected_token_is_not_retried_and_never_shown(
    emulator: BotApiEmulator,
) -> None:
    await emulator.start()
    wrong = "654321:WRONG-secret-token-value"
    app = _app(_settings(emulator.url), Mongo.memory("startup_test"), token=wrong)
    sleeps = Sleeps()

    with pytest.raises(StartupFailed) as caught:
        await wait_for_dependencies(app, RETRY, sleep=sleeps)

    assert sleeps.delays == []
    assert caught.value.config_error
    assert "TELEGRAM_BOT_TOKEN" in str(caught.value)
    assert "WRONG-secret" not in str(caught.value)
    await abandon_start(app)


async def test_refused_credentials_are_not_retried(emulator: BotApiEmulator) -> None:
    await emulator.start()
    mongo = FlakyMongo(
        failures=None, error=OperationFailure("Authentication failed.", code=18)
    )
    app = _app(_settings(emulator.url), mongo)
    sleeps = Sleeps()

    with pytest.raises(StartupFailed, match="Authentication failed") as caught:
        await wait_for_dependencies(app, RETRY, sleep=sleeps)

    assert sleeps.delays == []
    assert mongo.pings == 1
    assert caught.value.config_error


async def test_a_stop_during_the_backoff_ends_start_up_cleanly(
    emulator: BotApiEmulator,
) -> None:
    await emulator.start()
    mongo = FlakyMongo(failures=None)
    app = _app(_settings(emulator.url), mongo)
    stop = asyncio.Event()

    async def sigterm() -> None:
        stop.set()

    sleeps = Sleeps(on_sleep={2: sigterm})

    await asyncio.wait_for(
        run_until_signalled(app, poll_timeout=1, startup=RETRY, stop=stop, sleep=sleeps),
        timeout=10,
    )

    assert sleeps.delays == [1.0, 2.0]
    assert mongo.pings == 2
    assert app.updater is not None and not app.updater.running
    assert emulator.stats.requests.get("getUpdates", 0) == 0


async def test_a_stop_during_a_hanging_attempt_ends_start_up_at_once(
    emulator: BotApiEmulator,
) -> None:
    stop = asyncio.Event()

    class Blackholed(FlakyMongo):
        async def ping(self) -> bool:  # a connect that is never answered
            self.pings += 1
            stop.set()  # SIGTERM arrives while it waits
            await asyncio.Event().wait()
            return True

    await emulator.start()
    mongo = Blackholed(failures=None)
    app = _app(_settings(emulator.url), mongo)
    sleeps = Sleeps()

    await asyncio.wait_for(
        run_until_signalled(app, poll_timeout=1, startup=RETRY, stop=stop, sleep=sleeps),
        timeout=10,
    )

    assert (mongo.pings, sleeps.delays) == (1, [])
    assert emulator.stats.requests.get("getMe", 0) == 0


async def test_the_default_sleep_wakes_up_on_stop() -> None:
    from bot.runner import interruptible_sleep

    stop = asyncio.Event()
    sleep = interruptible_sleep(stop)
    waiting = asyncio.create_task(sleep(3600))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(waiting, timeout=5)
