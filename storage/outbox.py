"""``outbox``: notifications waiting for delivery (admin alerts, user notices).

Enqueueing is idempotent by ``dedup_key``. Delivery claims one message at a time, right
before sending it (``claim_next``): the claim hides it from every other deliverer for
``SEND_LEASE`` and carries a fresh ``claim_id``, and the outcome is recorded only under that
claim. Nothing is claimed ahead of its send, so a slow send cannot let a waiting message's
claim expire and be taken (and sent) by another run. Only a process that dies mid-send
leaves a claim behind; the message is sent again after ``SEND_LEASE`` (at least once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.client import Document

# A claimed message is invisible to other deliverers for this long: far longer than one
# send can take (Bot API request timeouts are seconds), since it covers only that send.
SEND_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class OutboxMessage:
    id: ObjectId
    chat_id: int
    text: str
    kind: str
    attempts: int
    reply_markup: dict[str, Any] | None
    claim_id: ObjectId | None = None
    # Set for a disarm: that message of ``chat_id`` loses its keyboard (``text``, when not
    # empty, becomes its text) instead of a new message being sent.
    edit_message_id: int | None = None


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
        edit_message_id: int | None = None,
    ) -> bool:
        """Queues a message; False when one with the same ``dedup_key`` already exists."""
        doc: Document = {
            "chat_id": chat_id,
            "text": text,
            "kind": kind,
            "reply_markup": reply_markup,
            "edit_message_id": edit_message_id,
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

    async def forget_sent(self, chat_id: int) -> int:
        """Deletes the messages already delivered to (or given up for) ``chat_id``: their
        texts may hold addresses. Undelivered ones are still owed and stay."""
        result = await self.col.delete_many(
            {
                "chat_id": chat_id,
                "$or": [{"delivered_at": {"$ne": None}}, {"failed_at": {"$ne": None}}],
            }
        )
        return int(result.deleted_count)

    async def claim_next(self, *, now: datetime) -> OutboxMessage | None:
        """Claims the most overdue message for one send; None when nothing is due."""
        claim_id = ObjectId()
        doc = await self.col.find_one_and_update(
            {"delivered_at": None, "failed_at": None, "next_attempt_at": {"$lte": now}},
            {
                "$set": {"next_attempt_at": now + SEND_LEASE, "claim_id": claim_id},
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", 1)],
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        return OutboxMessage(
            id=doc["_id"],
            chat_id=doc["chat_id"],
            text=doc["text"],
            kind=doc["kind"],
            attempts=doc["attempts"],
            reply_markup=doc.get("reply_markup"),
            claim_id=claim_id,
            edit_message_id=doc.get("edit_message_id"),
        )

    @staticmethod
    def _claimed(message: OutboxMessage) -> Document:
        # Only the holder of the current claim records an outcome.
        return {"_id": message.id, "claim_id": message.claim_id, "delivered_at": None}

    async def mark_delivered(self, message: OutboxMessage, *, now: datetime) -> None:
        await self.col.update_one(self._claimed(message), {"$set": {"delivered_at": now}})

    async def mark_retry(self, message: OutboxMessage, *, at: datetime, error: str) -> None:
        await self.col.update_one(
            self._claimed(message), {"$set": {"next_attempt_at": at, "last_error": error[:500]}}
        )

    async def mark_failed(self, message: OutboxMessage, *, now: datetime, error: str) -> None:
        await self.col.update_one(
            self._claimed(message), {"$set": {"failed_at": now, "last_error": error[:500]}}
        )

    async def pending_stats(self, *, now: datetime) -> tuple[int, float]:
        """Depth of the undelivered queue and the age in seconds of its oldest message."""
        query = {"delivered_at": None, "failed_at": None}
        depth: int = await self.col.count_documents(query)
        oldest = await self.col.find_one(query, sort=[("created_at", 1)])
        age = (now - oldest["created_at"]).total_seconds() if oldest else 0.0
        return depth, age
