"""``bulk_jobs``: one spreadsheet upload, from validation to the last label.

``validated`` → ``quoting`` → ``quoted`` → ``running`` → ``delivering`` → ``done``;
``validated``/``quoted`` → ``expired`` when not paid within ``bulk.row_ttl_days``.
Every status change is conditional on the previous status. The rows themselves become
``orders`` documents (``bulk_job_id``, ``bulk_row``) when the job is quoted, so each row
goes through the same purchase, recovery and My labels paths as a single order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, ReturnDocument

from storage.client import Document, aggregate

ACTIVE = ("quoting", "running", "delivering")


class BulkJobsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["bulk_jobs"]

    async def insert(self, doc: Document) -> Document:
        await self.col.insert_one(doc)
        return doc

    async def get(self, job_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": job_id})
        return doc

    async def transition(
        self,
        job_id: ObjectId,
        *,
        from_status: str | tuple[str, ...],
        to_status: str,
        now: datetime,
        fields: dict[str, Any] | None = None,
        extra_filter: dict[str, Any] | None = None,
    ) -> Document | None:
        statuses = (from_status,) if isinstance(from_status, str) else from_status
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": job_id, "status": {"$in": list(statuses)}, **(extra_filter or {})},
            {"$set": {"status": to_status, "updated_at": now, **(fields or {})}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def set_fields(self, job_id: ObjectId, fields: dict[str, Any]) -> None:
        await self.col.update_one({"_id": job_id}, {"$set": fields})

    async def request_cancel(self, job_id: ObjectId, *, by: int, now: datetime) -> Document | None:
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": job_id, "status": "running", "cancel_requested_by": None},
            {"$set": {"cancel_requested_by": by, "cancel_requested_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def active(self, *, limit: int = 20) -> list[Document]:
        cursor = (
            self.col.find(
                {
                    "$or": [
                        {"status": {"$in": list(ACTIVE)}},
                        # a quote whose message has not reached the chat yet
                        {"status": "quoted", "quote_notice_pending": True},
                    ]
                }
            )
            .sort("_id", 1)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def stale(
        self, *, statuses: tuple[str, ...], before: datetime, limit: int
    ) -> list[Document]:
        cursor = self.col.find(
            {"status": {"$in": list(statuses)}, "updated_at": {"$lte": before}},
            projection={"rows": 0},
        ).limit(limit)
        return [doc async for doc in cursor]

    async def active_for_user(self, user_id: int) -> Document | None:
        """A job of the customer whose money is moving (quoted rows, a purchase running)."""
        doc: Document | None = await self.col.find_one(
            {"user_id": user_id, "status": {"$in": list(ACTIVE)}}, projection={"rows": 0}
        )
        return doc

    async def erase_personal(self, user_id: int, *, now: datetime) -> None:
        """Data deletion: the rows as uploaded (recipients) and the sender go; counts,
        totals and statuses stay (the orders keep their amounts too)."""
        await self.col.update_many(
            {"user_id": user_id},
            {"$unset": {"rows": "", "sender": "", "filename": ""}, "$set": {"erased_at": now}},
        )

    async def for_user(self, user_id: int, *, limit: int) -> list[Document]:
        cursor = (
            self.col.find({"user_id": user_id}, projection={"rows": 0})
            .sort("_id", DESCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def count_by_status(self, *, since: datetime | None = None) -> dict[str, int]:
        match: dict[str, Any] = {} if since is None else {"created_at": {"$gte": since}}
        rows = await aggregate(
            self.col, [{"$match": match}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        )
        return {str(row["_id"]): int(row["n"]) for row in rows}
