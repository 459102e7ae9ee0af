"""Shared fixtures: an isolated database per test (mongomock, or real MongoDB when
``MONGO_TEST_URL`` is set) and test settings."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.settings import AdminEntry, Role, Secrets, Settings, WebSettings
from storage.client import Mongo, MongoOptions

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


_ASYNC_OPS = {
    "find_one",
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "delete_one",
    "delete_many",
    "find_one_and_update",
    "find_one_and_delete",
    "count_documents",
}


class _YieldingCollection:
    """Yields to the event loop around every operation, as a real network driver does.

    mongomock-motor runs each operation synchronously inside one coroutine step, so
    concurrent tasks never interleave between a read and a write; this wrapper makes
    the races of a real deployment reachable in tests.
    """

    def __init__(self, inner: object, rng: random.Random) -> None:
        self._inner = inner
        self._rng = rng

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._inner, name)
        if name not in _ASYNC_OPS:
            return attr

        async def call(*args: object, **kwargs: object) -> object:
            for _ in range(self._rng.randint(0, 2)):
                await asyncio.sleep(0)
            result = await attr(*args, **kwargs)
            for _ in range(self._rng.randint(0, 2)):
                await asyncio.sleep(0)
            return result

        return call


class YieldingDb:
    def __init__(self, inner: object, seed: int = 0) -> None:
        self._inner = inner
        self._rng = random.Random(seed)

    def __getitem__(self, name: str) -> _YieldingCollection:
        return _YieldingCollection(self._inner[name], self._rng)  # type: ignore[index]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)
