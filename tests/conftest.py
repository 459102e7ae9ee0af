"""Shared fixtures: an isolated database per test (mongomock, or real MongoDB when
``MONGO_TEST_URL`` is set) and test settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import hypothesis  # noqa: F401 - see below
import pytest

from bot.settings import AdminEntry, Role, Secrets, Settings, ShippingSettings, WebSettings
from storage.client import Mongo, MongoOptions
from storage.interleave import InterleavingDatabase

# hypothesis is imported here, at start-up, rather than by its pytest plugin at the end of
# a run: CPython 3.11.7 can fail to compile a module after the kill tests' cancelled tasks
# ("SystemError: AST constructor recursion depth mismatch", fixed in later releases), and a
# run of only those tests then ended in that error after every test had passed.

TOKEN = "123456:TEST-token-AbCdEfGhIjKlMnOpQrStUvWxYz"
OWNER_ID = 900001
ADMIN_ID = 900002
SUPPORT_ID = 900003


class FakeClock:
    """A settable UTC clock for services and storage."""

    def __init__(self, start: datetime | None = None) -> None:
        # Start at the real time (to the millisecond, as MongoDB stores it): mongomock
        # compares TTL indexes with the wall clock.
        now = datetime.now(UTC)
        self.now = start or now.replace(microsecond=now.microsecond // 1000 * 1000)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        # Scripted users type faster than people; tests of flood control set their own.
        "flood": {"max_updates": 10_000, "window_seconds": 10, "mute_seconds": 30},
        "admins": (
            AdminEntry(user_id=OWNER_ID, role=Role.OWNER),
            AdminEntry(user_id=ADMIN_ID, role=Role.ADMIN),
            AdminEntry(user_id=SUPPORT_ID, role=Role.SUPPORT),
        ),
        "secrets": Secrets.model_construct(telegram_bot_token=None, mongo_url=None),
        "web": WebSettings(port=0),  # a free port per application
        # The carrier's address check ("did you mean") is on in production; the order
        # flows of most tests type ZIP5 addresses the fake would correct, so it is off
        # here and on in the tests of the check itself (tests/e2e/test_validation.py).
        "shipping": ShippingSettings(validate_addresses=False),
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def mongo() -> AsyncIterator[Mongo]:
    url = os.environ.get("MONGO_TEST_URL")
    name = f"shiplabel_test_{uuid.uuid4().hex[:12]}"
    if url:
        handle = Mongo.connect(url, MongoOptions(database=name, server_selection_timeout_ms=2000))
        try:
            await handle.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "no server"
            pytest.skip(f"MONGO_TEST_URL set but not reachable: {type(exc).__name__}")
        yield handle
        await handle.client.drop_database(name)
        await handle.close()
    else:
        yield Mongo.memory(name)


def YieldingDb(inner: object, seed: int = 0) -> InterleavingDatabase:  # noqa: N802
    """The in-memory database with seeded random extra yields at every call, so a test
    can try several interleavings (``Mongo.memory`` always yields once before and after)."""
    base = inner.inner if isinstance(inner, InterleavingDatabase) else inner
    return InterleavingDatabase(base, seed=seed)
