"""``data_deletions``: one document per "Delete my data" request a customer was shown.

``offered`` (the confirmation button exists, until ``expires_at``) → ``running`` (pressed;
the erasure steps are idempotent, so a run cut short is finished by pressing again) →
``done`` | ``refused`` (something was still open); ``offered`` → ``cancelled``. Every
transition is conditional, so the erasure, its audit entry and the admin notice happen
once per request. The documents are the register of deletion requests (ids and counts
only, no personal data).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from storage.client import Document


class DataDeletionsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["data_deletions"]

    async def offer(self, user_id: int, *, now: datetime, expires_at: datetime) -> Document:
        doc: Document = {
            "_id": ObjectId(),
            "user_id": user_id,
            "status": "offered",
            "created_at": now,
            "expires_at": expires_at,
        }
        await self.col.insert_one(doc)
        return doc

    async def get(self, deletion_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": deletion_id})
        return doc

    async def claim(
        self, deletion_id: ObjectId, user_id: int, *, now: datetime
    ) -> Document | None:
        """``offered`` (not expired) → ``running``; a ``running`` one (a run cut short) is
        returned as is, to be finished. None: not this user's, expired, or closed."""
        doc: Document | None = await self.col.find_one_and_update(
            {
                "_id": deletion_id,
                "user_id": user_id,
                "status": "offered",
                "expires_at": {"$gt": now},
            },
            {"$set": {"status": "running", "started_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            doc = await self.col.find_one(
                {"_id": deletion_id, "user_id": user_id, "status": "running"}
            )
        return doc

    async def set_counts(self, deletion_id: ObjectId, counts: dict[str, int]) -> Document | None:
        """Records what the run found before erasing (kept if a first run set them)."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": deletion_id, "status": "running", "counts": None},
            {"$set": {"counts": counts}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            doc = await self.col.find_one({"_id": deletion_id})
        return doc

    async def close(
        self,
        deletion_id: ObjectId,
        *,
        from_status: str,
        to_status: str,
        now: datetime,
        fields: dict[str, Any] | None = None,
    ) -> Document | None:
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": deletion_id, "status": from_status},
            {"$set": {"status": to_status, "closed_at": now, **(fields or {})}},
            return_document=ReturnDocument.AFTER,
        )
        return doc
