"""``outbox``: notifications waiting for delivery (admin alerts, user notices).

Enqueueing is idempotent by ``dedup_key``; delivery is at-least-once by a job that
claims due messages, sends them and records the outcome with exponential backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.client import Document

# A claimed message is invisible to other delivery runs for this long.
CLAIM_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class OutboxMessage:
    id: ObjectId
    chat_id: int
    text: str
    kind: str
    attempts: int
    reply_markup: dict[str, Any] | None


class OutboxRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["outbox"]

    async def enqueue(
        self,
        *,
        chat_id: int,
        text: str,
        kind: str,
        dedup_key: str | None,
        now: datetime,
        reply_markup: dict[str, Any] | None = None,
    ) -> bool:
        """Queues a message; False when one with the same ``dedup_key`` already exists."""
        doc: Document = {
            "chat_id": chat_id,
            "text": text,
            "kind": kind,
            "reply_markup": reply_markup,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "delivered_at": None,
            "failed_at": None,
            "last_error": None,
        }
        doc["dedup_key"] = dedup_key if dedup_key is not None else f"unique:{ObjectId()}"
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def claim_due(self, *, now: datetime, limit: int) -> list[OutboxMessage]:
        cursor = (
            self.col.find(
                {"delivered_at": None, "failed_at": None, "next_attempt_at": {"$lte": now}},
                {"_id": 1},
            )
            .sort("next_attempt_at", 1)
            .limit(limit)
        )
        ids = [doc["_id"] async for doc in cursor]
        claimed: list[OutboxMessage] = []
        for oid in ids:
            doc = await self.col.find_one_and_update(
                {"_id": oid, "delivered_at": None, "next_attempt_at": {"$lte": now}},
                {"$set": {"next_attempt_at": now + CLAIM_LEASE}, "$inc": {"attempts": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                claimed.append(
                    OutboxMessage(
                        id=doc["_id"],
                        chat_id=doc["chat_id"],
                        text=doc["text"],
                        kind=doc["kind"],
                        attempts=doc["attempts"],
                        reply_markup=doc.get("reply_markup"),
                    )
                )
        return claimed

    async def mark_delivered(self, oid: ObjectId, *, now: datetime) -> None:
        await self.col.update_one({"_id": oid}, {"$set": {"delivered_at": now}})

    async def mark_retry(self, oid: ObjectId, *, at: datetime, error: str) -> None:
        await self.col.update_one(
            {"_id": oid}, {"$set": {"next_attempt_at": at, "last_error": error[:500]}}
        )

    async def mark_failed(self, oid: ObjectId, *, now: datetime, error: str) -> None:
        await self.col.update_one(
            {"_id": oid}, {"$set": {"failed_at": now, "last_error": error[:500]}}
        )

    async def pending_stats(self, *, now: datetime) -> tuple[int, float]:
        """Depth of the undelivered queue and the age in seconds of its oldest message."""
        query = {"delivered_at": None, "failed_at": None}
        depth: int = await self.col.count_documents(query)
        oldest = await self.col.find_one(query, sort=[("created_at", 1)])
        age = (now - oldest["created_at"]).total_seconds() if oldest else 0.0
        return depth, age
