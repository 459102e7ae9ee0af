"""``Storage``: the MongoDB connection and every repository built on it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from storage.audit import AuditRepo
from storage.broadcasts import BroadcastsRepo
from storage.bulk_jobs import BulkJobsRepo
from storage.client import Mongo, MongoOptions, money_database
from storage.confirmations import ConfirmationsRepo
from storage.deletions import DataDeletionsRepo
from storage.exports import ExportRepo
from storage.inbox import InboxRepo
from storage.indexes import IndexOptions, ensure_indexes
from storage.ledger import LedgerRepo
from storage.orders import OrdersRepo
from storage.outbox import OutboxRepo
from storage.payments import PaymentsRepo
from storage.presets import PresetsRepo
from storage.processed_updates import ProcessedUpdatesRepo
from storage.refunds import RefundsRepo
from storage.runtime_settings import RuntimeSettingsRepo
from storage.sessions import SessionsRepo
from storage.stats import StatsRepo
from storage.templates import TemplatesRepo
from storage.users import UsersRepo


class Storage:
    """Connects lazily inside the running event loop; ``start`` and ``close`` are idempotent."""

    def __init__(
        self,
        url: str,
        options: MongoOptions,
        *,
        session_ttl: timedelta,
        index_options: IndexOptions,
        mongo: Mongo | None = None,
    ) -> None:
        self._url = url
        self._options = options
        self._session_ttl = session_ttl
        self._index_options = index_options
        self._mongo = mongo
        self._owns_client = mongo is None
        self._lock = asyncio.Lock()
        self._started = False

    @property
    def mongo(self) -> Mongo:
        if self._mongo is None:
            raise RuntimeError("storage is not started")
        return self._mongo

    async def start(self) -> Storage:
        async with self._lock:
            if self._started:
                return self
            if self._mongo is None:
                self._mongo = Mongo.connect(self._url, self._options)
            db = self._mongo.db
            await self._mongo.ping()
            options = replace(self._index_options, ttl_monitor=not self._mongo.in_memory)
            await ensure_indexes(db, options)
            # Money effects are written with the money write concern (majority by default).
            money = money_database(self._mongo, self._options)
            self.users = UsersRepo(db)
            self.runtime_settings = RuntimeSettingsRepo(db)
            self.sessions = SessionsRepo(db, ttl=self._session_ttl)
            self.processed_updates = ProcessedUpdatesRepo(db)
            self.outbox = OutboxRepo(db)
            self.ledger = LedgerRepo(money)
            self.payments = PaymentsRepo(money)
            self.audit = AuditRepo(db)
            self.orders = OrdersRepo(money)
            self.bulk_jobs = BulkJobsRepo(db)
            self.templates = TemplatesRepo(db)
            self.presets = PresetsRepo(db)
            self.refunds = RefundsRepo(money)
            self.inbox = InboxRepo(db)
            self.broadcasts = BroadcastsRepo(db)
            self.confirmations = ConfirmationsRepo(db)
            self.stats = StatsRepo(db)
            self.exports = ExportRepo(db)
            self.deletions = DataDeletionsRepo(db)
            self._started = True
            return self

    async def sessions_repo(self) -> SessionsRepo:
        await self.start()
        return self.sessions

    async def close(self) -> None:
        async with self._lock:
            # Also a client whose start failed half-way (start-up retries, then a stop).
            if self._mongo is not None and self._owns_client:
                await self._mongo.close()
                self._mongo = None
            self._started = False
