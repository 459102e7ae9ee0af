"""Two production applications, one Bot API emulator, one database: a single poller with
a hot standby that takes over when the leader dies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from bot.application import BotApplication, build_application
from bot.harness import SANDBOX_TOKEN
from bot.lease import PollerLease
from bot.runner import start_application, stop_application
from bot.settings import Settings, WebSettings
from bot.web import WebServer, application_checks
from sandbox.telegram import BotApiEmulator, SentMessage
from storage.client import Mongo, MongoOptions
from storage.indexes import IndexOptions
from storage.locks import POLLER_LEASE, LocksRepo
from storage.repos import Storage
from tests.conftest import ADMIN_ID, OWNER_ID, make_settings

LEASE_SECONDS = 1.5
RENEW_SECONDS = 0.3


@dataclass
class Instance:
    name: str
    app: BotApplication
    lease: PollerLease
    web: WebServer
    stopped: bool = False

    @property
    def polling(self) -> bool:
        return self.app.updater is not None and self.app.updater.running

    async def ready(self) -> tuple[int, list[str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.web.url + "/readyz") as resp,
        ):
            body = await resp.json()
            return resp.status, body["failing"]

    async def stop(self, *, release: bool = True) -> None:
        if not self.stopped:
            self.stopped = True
            await self.web.stop()
            await stop_application(self.app, release_lease=release)


class Cluster:
    def __init__(self, settings: Settings, mongo: Mongo, emulator: BotApiEmulator) -> None:
        self.settings = settings
        self.mongo = mongo
        self.emulator = emulator
        self.instances: list[Instance] = []

    async def start(self, name: str) -> Instance:
        tg = self.settings.telegram.model_copy(
            update={
                "base_url": self.emulator.base_url,
                "base_file_url": self.emulator.base_file_url,
            }
        )
        settings = self.settings.model_copy(update={"telegram": tg})
        storage = Storage(
            "mongomock://",
            MongoOptions(database=settings.mongo.database),
            session_ttl=timedelta(minutes=settings.sessions.ttl_minutes),
            index_options=IndexOptions(),
            mongo=self.mongo,
        )
        app = build_application(settings, storage, token=self.emulator.token)
        lease = PollerLease(
            LocksRepo(self.mongo.db),
            holder=name,
            lease_seconds=LEASE_SECONDS,
            renew_seconds=RENEW_SECONDS,
        )
        await start_application(app, poll_timeout=1, lease=lease)
        web = WebServer("127.0.0.1", 0, checks=application_checks(app))
        await web.start()
        instance = Instance(name, app, lease, web)
        self.instances.append(instance)
        return instance

    async def close(self) -> None:
        for instance in self.instances:
            await instance.stop()

    async def exchange(self, user_id: int, text: str) -> str:
        return (await self.say(user_id, text))[0].content

    async def say(self, user_id: int, text: str) -> list[SentMessage]:
        mark = self.emulator.cursor(user_id)
        self.emulator.send_message(user_id, text)
        return await self.emulator.wait_for_messages(user_id, 1, since=mark, timeout=4)

    async def press(self, user_id: int, message: SentMessage, label: str) -> list[SentMessage]:
        mark = self.emulator.cursor(user_id)
        self.emulator.press_button(user_id, message.message_id, message.callback_data_for(label))
        return await self.emulator.wait_for_messages(user_id, 1, since=mark, timeout=4)


@pytest.fixture
async def cluster(mongo: Mongo) -> AsyncIterator[Cluster]:
    settings = make_settings(web=WebSettings(port=0))
    async with BotApiEmulator(SANDBOX_TOKEN, rate_limits=False) as emulator:
        c = Cluster(settings, mongo, emulator)
        try:
            yield c
        finally:
            await c.close()


async def test_one_poller_and_failover_to_the_standby(cluster: Cluster) -> None:
    emulator = cluster.emulator
    leader = await cluster.start("a")
    standby = await cluster.start("b")
    assert leader.lease.held and leader.polling
    assert not standby.lease.held and not standby.polling

    await _eventually(lambda: _is_ready(leader))
    status, failing = await standby.ready()
    assert status == 503 and failing == ["poller_lease", "telegram_polling"]

    emulator.add_user(501, first_name="Ann")
    assert "Welcome" in await cluster.exchange(501, "/start")

    # Several renewals and standby attempts later there is still exactly one poller.
    await asyncio.sleep(RENEW_SECONDS * 3)
    assert leader.lease.held and not standby.lease.held and not standby.polling
    token = leader.lease.token

    # The leader dies without releasing its lease (as a killed process would).
    died = time.monotonic()
    await leader.stop(release=False)
    await asyncio.wait_for(standby.lease.wait_held(), timeout=LEASE_SECONDS + 2)
    assert time.monotonic() - died <= LEASE_SECONDS + RENEW_SECONDS + 0.3
    assert standby.lease.token == (token or 0) + 1
    await emulator.wait_until(lambda: emulator.stats.active_pollers == 1, timeout=3)
    assert standby.polling

    assert "Welcome back" in await cluster.exchange(501, "/start")
    await _eventually(lambda: _is_ready(standby))

    stats = emulator.stats
    assert stats.max_concurrent_pollers == 1
    assert stats.conflicts == 0


async def test_a_leader_that_sees_another_holder_stops_polling(cluster: Cluster) -> None:
    emulator = cluster.emulator
    a = await cluster.start("a")
    b = await cluster.start("b")
    assert a.polling and not b.polling
    # Someone else takes the lease (e.g. an instance of another deployment).
    await cluster.mongo.db["locks"].update_one(
        {"_id": POLLER_LEASE}, {"$set": {"holder": "intruder"}, "$inc": {"token": 1}}
    )
    await asyncio.wait_for(a.lease.wait_lost(), timeout=RENEW_SECONDS * 3)
    await emulator.wait_until(lambda: emulator.stats.active_pollers == 0, timeout=2)
    assert not a.polling and not b.polling
    # The intruder never renews: after its expiry exactly one of ours takes over.
    winner = await asyncio.wait_for(_first_holder(a, b), timeout=LEASE_SECONDS + 2)
    await emulator.wait_until(lambda: emulator.stats.active_pollers == 1, timeout=3)
    assert winner.polling
    emulator.add_user(502)
    assert "Welcome" in await cluster.exchange(502, "/start")
    assert sum(i.lease.held for i in (a, b)) == 1
    assert emulator.stats.conflicts == 0
    assert emulator.stats.max_concurrent_pollers == 1


async def test_clean_shutdown_releases_the_lease_for_an_immediate_handover(
    cluster: Cluster,
) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    started = time.monotonic()
    await a.stop()  # releases the lease
    await asyncio.wait_for(b.lease.wait_held(), timeout=RENEW_SECONDS * 4)
    assert time.monotonic() - started < LEASE_SECONDS
    assert cluster.emulator.stats.conflicts == 0


async def test_the_standby_continues_conversations_where_the_leader_left_them(
    cluster: Cluster,
) -> None:
    emulator = cluster.emulator
    for user_id in (OWNER_ID, ADMIN_ID, 601):
        emulator.add_user(user_id)
    leader = await cluster.start("a")
    standby = await cluster.start("b")  # loads conversation positions now: none yet
    [topics] = await cluster.say(601, "/support")
    assert "Step 1 of 2" in topics.content
    [ask] = await cluster.press(601, topics, "payment")
    assert "Step 2 of 2" in ask.content

    sessions = cluster.mongo.db["sessions"]
    await _eventually(lambda: _has_position(sessions, "support"))  # the leader's flush

    await leader.stop(release=False)  # a crash
    await asyncio.wait_for(standby.lease.wait_held(), timeout=LEASE_SECONDS + 2)
    await emulator.wait_until(lambda: emulator.stats.active_pollers == 1, timeout=3)

    [done] = await cluster.say(601, "My top-up did not arrive")
    assert "Thank you" in done.content  # step 2 answered by the new leader
    # The conversation ended on the new leader, and that is persisted too.
    await _eventually(lambda: _no_position(sessions, "support"))
    assert emulator.stats.conflicts == 0


async def _has_position(sessions: Any, name: str) -> bool:
    doc = await sessions.find_one({"_id": "601:601"})
    return bool(doc and name in (doc.get("states") or {}))


async def _is_ready(instance: Instance) -> bool:
    return await instance.ready() == (200, [])


async def _no_position(sessions: Any, name: str) -> bool:
    return not await _has_position(sessions, name)


async def _eventually(predicate: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(60):  # up to 3 s
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached within 3 s")


async def _first_holder(*instances: Instance) -> Instance:
    while True:
        for instance in instances:
            if instance.lease.held:
                return instance
        await asyncio.sleep(0.05)
