"""``audit``: every admin action that changes something (who, what, target, before, after)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING

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
    ) -> None:
        await self.col.insert_one(
            {
                "actor": actor,
                "action": action,
                "target": target,
                "before": before,
                "after": after,
                "at": at,
            }
        )

    async def latest(self, limit: int) -> list[Document]:
        cursor = self.col.find({}).sort("at", DESCENDING).limit(limit)
        return [doc async for doc in cursor]
