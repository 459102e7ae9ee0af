"""``refunds``: one document per label (unique ``order_id``); conditional transitions.

``requested`` → ``voiding`` → ``approved`` → ``credited``; ``voiding`` → ``rejected``;
``voiding`` → ``requested`` (retry later) → … → ``needs_review``;
``needs_review``/``requested`` → ``voiding`` (an admin approves: the void is asked for;
a refusal of an admin-approved void → ``needs_review``), ``rejected`` (admin), or
``approved`` (admin, credit without void, through a confirmation).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.client import Document


class AlreadyRequested(Exception):
    pass


class RefundsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["refunds"]

    async def create(self, doc: Document) -> Document:
        doc = {"_id": ObjectId(), **doc}
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError:
            raise AlreadyRequested(doc["order_id"]) from None
        return doc

    async def get(self, refund_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": refund_id})
        return doc

    async def by_order(self, order_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"order_id": order_id})
        return doc

    async def by_orders(self, order_ids: Sequence[ObjectId]) -> dict[ObjectId, Document]:
        if not order_ids:
            return {}
        cursor = self.col.find({"order_id": {"$in": list(order_ids)}})
        return {doc["order_id"]: doc async for doc in cursor}

    async def transition(
        self,
        refund_id: ObjectId,
        *,
        from_statuses: Sequence[str],
        to_status: str,
        now: datetime,
        fields: dict[str, Any] | None = None,
        inc: dict[str, int] | None = None,
        extra_filter: dict[str, Any] | None = None,
    ) -> Document | None:
        update: dict[str, Any] = {
            "$set": {"status": to_status, "updated_at": now, **(fields or {})},
            "$push": {"history": {"status": to_status, "at": now}},
        }
        if inc:
            update["$inc"] = inc
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": refund_id, "status": {"$in": list(from_statuses)}, **(extra_filter or {})},
            update,
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def due(
        self, *, now: datetime, lease_expired_before: datetime, limit: int
    ) -> list[Document]:
        """Requests to work on: due ``requested``, ``voiding`` whose worker vanished, and
        ``approved`` (crashed between the approval and the credit)."""
        cursor = (
            self.col.find(
                {
                    "$or": [
                        {"status": "requested", "next_attempt_at": {"$lte": now}},
                        {"status": "voiding", "voiding_at": {"$lte": lease_expired_before}},
                        {"status": "approved"},
                    ]
                }
            )
            .sort("created_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def for_user(self, user_id: int, *, limit: int) -> list[Document]:
        cursor = self.col.find({"user_id": user_id}).sort("created_at", DESCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def open_for_user(self, user_id: int) -> list[Document]:
        cursor = self.col.find(
            {"user_id": user_id,
             "status": {"$in": ["requested", "voiding", "approved", "needs_review"]}}
        ).limit(10)
        return [doc async for doc in cursor]

    async def by_status(self, statuses: Sequence[str], *, limit: int) -> list[Document]:
        cursor = (
            self.col.find({"status": {"$in": list(statuses)}})
            .sort("created_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def claim_unannounced(self, *, now: datetime, limit: int) -> list[Document]:
        """New requests not yet reported to admins, each claimed once."""
        cursor = self.col.find({"announced_at": None}, {"_id": 1}).limit(limit)
        ids = [doc["_id"] async for doc in cursor]
        claimed = []
        for rid in ids:
            doc = await self.col.find_one_and_update(
                {"_id": rid, "announced_at": None},
                {"$set": {"announced_at": now}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                claimed.append(doc)
        return claimed
