"""Fixtures: the fakes on 127.0.0.1, clients pointed at them, a manual monotonic clock
and a sleep recorder so retry waits cost no real time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from providers.base import CircuitState
from providers.payments.oxapay import OxaPayClient
from providers.shipping.shipstation import ShipStationClient
from sandbox.oxapay import FakeOxaPay
from sandbox.shipstation import FakeShipStation

SANDBOX_KEY = "TEST_sandbox_key_0123456789"
PRODUCTION_KEY = "live_production_key_9876543210"
MERCHANT_KEY = "merchant-key-ABCDEF-123456"


class ManualClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SleepRecorder:
    """Stands in for asyncio.sleep: records the delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Transitions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, CircuitState, CircuitState]] = []

    def __call__(self, provider: str, old: CircuitState, new: CircuitState) -> None:
        self.calls.append((provider, old, new))


class KeyBox:
    """The runtime API mode switch: which ShipStation key the client uses now."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self) -> str:
        return self.key


@pytest.fixture
def mono() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def transitions() -> Transitions:
    return Transitions()


@pytest.fixture
async def fake_ss() -> AsyncIterator[FakeShipStation]:
    fake = FakeShipStation(production_api_key=PRODUCTION_KEY, instant=True)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_oxa() -> AsyncIterator[FakeOxaPay]:
    fake = FakeOxaPay(merchant_api_key=MERCHANT_KEY, instant=True)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def key_box() -> KeyBox:
    return KeyBox(SANDBOX_KEY)


@pytest.fixture
async def make_ss(
    fake_ss: FakeShipStation,
    key_box: KeyBox,
    mono: ManualClock,
    sleeps: SleepRecorder,
    transitions: Transitions,
) -> AsyncIterator[Callable[..., ShipStationClient]]:
    clients: list[ShipStationClient] = []

    def factory(**overrides: Any) -> ShipStationClient:
        options: dict[str, Any] = {
            "timeout_total": 5.0,
            "max_attempts": 3,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "backoff_jitter": 0.0,
            "failure_threshold": 5,
            "recovery_timeout": 30.0,
            "on_state_change": transitions,
            "clock": mono,
            "sleep": sleeps,
        }
        options.update(overrides)
        client = ShipStationClient(fake_ss.base_url, key_box, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def ss(make_ss: Callable[..., ShipStationClient]) -> ShipStationClient:
    return make_ss()


@pytest.fixture
async def make_oxa(
    fake_oxa: FakeOxaPay,
    mono: ManualClock,
    sleeps: SleepRecorder,
    transitions: Transitions,
) -> AsyncIterator[Callable[..., OxaPayClient]]:
    clients: list[OxaPayClient] = []

    def factory(**overrides: Any) -> OxaPayClient:
        options: dict[str, Any] = {
            "sandbox": True,
            "timeout_total": 5.0,
            "max_attempts": 3,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "backoff_jitter": 0.0,
            "on_state_change": transitions,
            "clock": mono,
            "sleep": sleeps,
        }
        options.update(overrides)
        key = options.pop("merchant_api_key", MERCHANT_KEY)
        client = OxaPayClient(fake_oxa.base_url, key, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def oxa(make_oxa: Callable[..., OxaPayClient]) -> OxaPayClient:
    return make_oxa()
