from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.harness import BotHarness
from bot.settings import Settings
from storage.client import Mongo
from tests.conftest import FakeClock


@pytest.fixture
async def harness(settings: Settings, mongo: Mongo, clock: FakeClock) -> AsyncIterator[BotHarness]:
    h = BotHarness(settings, mongo=mongo, clock=clock)
    await h.start()
    try:
        yield h
    finally:
        await h.close()


from tests.e2e.shop import shop  # noqa: E402,F401 - the fixture, shared by order tests
