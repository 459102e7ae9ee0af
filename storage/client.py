"""MongoDB client: PyMongo Async in production, mongomock-motor for ``mongomock://``.

The two APIs differ in small ways (see shared/reference/MONGO_TESTING.md); every
difference is wrapped here once so repositories never branch on the backend.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.write_concern import WriteConcern

from storage.interleave import InterleavingDatabase

_LOGGER = logging.getLogger(__name__)

MONGOMOCK_SCHEME = "mongomock://"

Document = dict[str, Any]


@dataclass(frozen=True)
class MongoOptions:
    database: str = "shiplabel"
    max_pool_size: int = 20
    min_pool_size: int = 2
    max_idle_time_ms: int = 30000
    server_selection_timeout_ms: int = 3000
    # Ledger, balances, payments, orders and refunds (``money_database``): acknowledged
    # only once a majority of the replica set has the write, so an election cannot roll
    # it back. ``money_wtimeout_ms`` bounds the wait (0: wait indefinitely).
    money_write_concern: int | str = "majority"
    money_wtimeout_ms: int = 10000


class Mongo:
    """Owns one client and its database handle; create it inside the running loop."""

    def __init__(self, client: Any, database: str, *, in_memory: bool) -> None:
        self.client = client
        self.db: Any = client[database]
        self.in_memory = in_memory
        if in_memory:
            # mongomock never suspends inside a call; a real server always does.
            self.db = InterleavingDatabase(self.db)

    @classmethod
    def memory(cls, database: str) -> Mongo:
        """An in-memory database (mongomock) with the faster lookups of ``inmemory``, that
        suspends at every call as a real server does (``storage.interleave``)."""
        from mongomock_motor import AsyncMongoMockClient

        from storage import inmemory

        inmemory.install()
        return cls(AsyncMongoMockClient(tz_aware=True), database, in_memory=True)

    @classmethod
    def connect(cls, url: str, options: MongoOptions) -> Mongo:
        if url.startswith(MONGOMOCK_SCHEME):
            _LOGGER.warning("MONGO_URL=mongomock:// is an in-memory database: nothing persists")
            return cls.memory(options.database)
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            url,
            tz_aware=True,
            maxPoolSize=options.max_pool_size,
            minPoolSize=options.min_pool_size,
            maxIdleTimeMS=options.max_idle_time_ms,
            serverSelectionTimeoutMS=options.server_selection_timeout_ms,
            appname="shiplabel-bot",
        )
        return cls(client, options.database, in_memory=False)

    async def ping(self) -> bool:
        if self.in_memory:
            return True
        await self.client.admin.command("ping")
        return True

    async def close(self) -> None:
        result = self.client.close()
        if inspect.isawaitable(result):
            await result


def money_write_concern(options: MongoOptions) -> WriteConcern:
    return WriteConcern(
        w=options.money_write_concern, wtimeout=options.money_wtimeout_ms or None
    )


def money_database(mongo: Mongo, options: MongoOptions) -> Any:
    """The database handle the money repositories write through.

    PyMongo: the same database with ``money_write_concern`` on every collection taken from
    it. The in-memory database has no replicas to wait for, and mongomock-motor's
    ``with_options`` returns synchronous collections, so it is returned unchanged.
    """
    if isinstance(mongo.db, AsyncDatabase):
        return mongo.db.with_options(write_concern=money_write_concern(options))
    return mongo.db


async def aggregate(
    collection: Any, pipeline: Sequence[Mapping[str, Any]], **kwargs: Any
) -> list[Document]:
    """Run an aggregation on either backend (PyMongo Async awaits ``aggregate``)."""
    cursor = collection.aggregate(list(pipeline), **kwargs)
    if inspect.isawaitable(cursor):
        cursor = await cursor
    return [doc async for doc in cursor]
