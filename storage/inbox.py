"""``inbox``: updates fetched from Telegram but not yet handled.

PTB confirms updates to Telegram on its next ``getUpdates`` call, which comes right after
the previous batch was queued, not after it was handled; a killed worker would lose every
update still in its in-memory queue. Each batch is therefore stored here before PTB sees
it, deleted once handled, and replayed when a worker starts polling. Handling is claimed
per update id (``processed_updates``), so a replay never handles an update twice.

Entries expire (``expires_at``, TTL index) after the ``processed_updates`` retention, and a
replay skips (and deletes) older ones: once its claim may have expired, an old update
could otherwise be handled a second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo.errors import BulkWriteError

from storage.client import Document


class InboxRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["inbox"]

    async def save(
        self, updates: list[dict[str, Any]], *, now: datetime, expires_at: datetime
    ) -> None:
        docs = [
            {
                "_id": int(update["update_id"]),
                "update": update,
                "received_at": now,
                "expires_at": expires_at,
            }
            for update in updates
            if "update_id" in update
        ]
        if not docs:
            return
        try:
            await self.col.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Already stored (a re-delivery): fine; anything else is a real failure.
            if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                raise

    async def delete(self, update_ids: Iterable[int]) -> None:
        ids = list(update_ids)
        if ids:
            await self.col.delete_many({"_id": {"$in": ids}})

    async def pending(self, *, received_after: datetime, limit: int = 10_000) -> list[Document]:
        """Entries to replay, oldest first: those received after ``received_after``."""
        cursor = (
            self.col.find({"received_at": {"$gt": received_after}}).sort("_id", 1).limit(limit)
        )
        return [doc async for doc in cursor]

    async def purge(self, *, received_before: datetime) -> int:
        """Removes entries received at or before ``received_before`` (too old to replay);
        also those stored before entries carried ``expires_at``."""
        result = await self.col.delete_many({"received_at": {"$lte": received_before}})
        return int(result.deleted_count)
