"""``processed_updates``: claims an update id so a re-delivered update is skipped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError


class ProcessedUpdatesRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["processed_updates"]

    async def claim(self, update_id: int, *, now: datetime, expires_at: datetime) -> bool:
        """True the first time an update id is seen, False for a re-delivery."""
        try:
            await self.col.insert_one(
                {"_id": update_id, "claimed_at": now, "expires_at": expires_at}
            )
        except DuplicateKeyError:
            return False
        return True

    async def purge(self, *, before: datetime) -> int:
        result = await self.col.delete_many({"expires_at": {"$lte": before}})
        return int(result.deleted_count)
