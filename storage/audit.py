"""``audit``: every admin action that changes something (who, what, target, before, after)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from storage.client import Document


class AuditRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["audit"]

    async def record(
        self,
        *,
        actor: int,
        action: str,
        target: str,
        before: Any,
        after: Any,
        at: datetime,
        key: str | None = None,
    ) -> bool:
        """Inserts the entry; with ``key`` (its ``_id``) a repeated record is a no-op."""
        doc: Document = {
            "actor": actor,
            "action": action,
            "target": target,
            "before": before,
            "after": after,
            "at": at,
        }
        if key is not None:
            doc["_id"] = key
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def latest(self, limit: int) -> list[Document]:
        cursor = self.col.find({}).sort("at", DESCENDING).limit(limit)
        return [doc async for doc in cursor]
