"""``broadcasts`` and ``broadcast_deliveries``: a message to every customer, sent once each.

A broadcast moves ``draft`` → ``preparing`` → ``sending`` → ``done`` (or ``draft`` →
``cancelled``), every step a conditional update. While ``preparing``, the audience is
written as one ``broadcast_deliveries`` document per user (``_id`` =
``"<broadcast id>:<user id>"``, so a user can never be listed twice), walking ``users`` in
``_id`` order from ``cursor_user_id``; a restart continues from the cursor.

A delivery moves ``pending`` → ``claimed`` (reserved by one run, in batches, with a claim
token) → ``sending`` (just before its one send) → ``sent`` | ``failed``, or back to
``pending`` when the send did not happen (rate limited, the run stopped before reaching
it). After a crash, a ``claimed`` delivery was never attempted and goes back to
``pending``; a ``sending`` one may or may not have reached the user, so it is never retried
(``failed`` with reason ``interrupted``): a duplicate is worse than a miss, and at most the
sends that were in flight are affected. Counters are not stored: they are counted from the
deliveries, so they are right after any crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.client import Document, aggregate

ACTIVE_STATUSES = ("preparing", "sending")
DELIVERY_STATUSES = ("pending", "claimed", "sending", "sent", "failed", "skipped")
IN_FLIGHT = ("claimed", "sending")


def delivery_id(broadcast_id: ObjectId, user_id: int) -> str:
    return f"{broadcast_id}:{user_id}"


@dataclass(frozen=True)
class Delivery:
    id: str
    user_id: int
    language: str


class BroadcastsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["broadcasts"]
        self.deliveries = db["broadcast_deliveries"]
        self.users = db["users"]

    # -- broadcasts ----------------------------------------------------------------------

    async def create(self, doc: Document) -> Document:
        doc = {"_id": ObjectId(), **doc}
        await self.col.insert_one(doc)
        return doc

    async def get(self, broadcast_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": broadcast_id})
        return doc

    async def transition(
        self,
        broadcast_id: ObjectId,
        *,
        from_statuses: Sequence[str],
        to_status: str,
        now: datetime,
        fields: dict[str, Any] | None = None,
    ) -> Document | None:
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": broadcast_id, "status": {"$in": list(from_statuses)}},
            {"$set": {"status": to_status, "updated_at": now, **(fields or {})}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def set_fields(self, broadcast_id: ObjectId, fields: dict[str, Any]) -> None:
        await self.col.update_one({"_id": broadcast_id}, {"$set": fields})

    async def oldest_active(self) -> Document | None:
        """The broadcast to work on: one at a time, so a chat never gets two at once."""
        doc: Document | None = await self.col.find_one(
            {"status": {"$in": list(ACTIVE_STATUSES)}}, sort=[("confirmed_at", ASCENDING)]
        )
        return doc

    # -- audience ------------------------------------------------------------------------

    async def add_audience_batch(
        self, broadcast: Document, *, limit: int, now: datetime
    ) -> tuple[int, bool]:
        """Lists the next ``limit`` users after the cursor; returns (listed, finished)."""
        cursor_id = broadcast.get("cursor_user_id")
        query: Document = {} if cursor_id is None else {"_id": {"$gt": cursor_id}}
        projection = {"language": 1, "notify_opt_out": 1, "bot_blocked_at": 1, "blocked": 1}
        cursor = self.users.find(query, projection).sort("_id", ASCENDING).limit(limit)
        users = [doc async for doc in cursor]
        docs = [self._delivery_doc(broadcast["_id"], user, now) for user in users]
        if docs:
            # Users listed by an earlier run that stopped before moving the cursor stay once.
            with contextlib.suppress(BulkWriteError, DuplicateKeyError):
                await self.deliveries.insert_many(docs, ordered=False)
            await self.col.update_one(
                {"_id": broadcast["_id"]},
                {"$set": {"cursor_user_id": users[-1]["_id"], "updated_at": now}},
            )
        return len(docs), len(users) < limit

    @staticmethod
    def _delivery_doc(broadcast_id: ObjectId, user: Document, now: datetime) -> Document:
        reason = None
        if user.get("blocked"):
            reason = "blocked"
        elif user.get("notify_opt_out"):
            reason = "opted_out"
        elif user.get("bot_blocked_at") is not None:
            reason = "bot_blocked"
        return {
            "_id": delivery_id(broadcast_id, int(user["_id"])),
            "broadcast_id": broadcast_id,
            "user_id": int(user["_id"]),
            "language": user.get("language"),
            "status": "skipped" if reason else "pending",
            "reason": reason,
            "created_at": now,
        }

    # -- deliveries ----------------------------------------------------------------------

    async def claim(
        self, broadcast_id: ObjectId, *, limit: int, token: ObjectId, now: datetime
    ) -> list[Delivery]:
        """Reserves up to ``limit`` pending deliveries for this run (``claimed``)."""
        cursor = (
            self.deliveries.find(
                {"broadcast_id": broadcast_id, "status": "pending"}, {"_id": 1}
            )
            .sort("user_id", ASCENDING)
            .limit(limit)
        )
        ids = [doc["_id"] async for doc in cursor]
        if not ids:
            return []
        await self.deliveries.update_many(
            {"_id": {"$in": ids}, "broadcast_id": broadcast_id, "status": "pending"},
            {"$set": {"status": "claimed", "claim": token, "claimed_at": now}},
        )
        claimed = self.deliveries.find(
            {"broadcast_id": broadcast_id, "status": "claimed", "claim": token}
        ).sort("user_id", ASCENDING)
        return [
            Delivery(
                id=doc["_id"],
                user_id=int(doc["user_id"]),
                language=str(doc.get("language") or ""),
            )
            async for doc in claimed
        ]

    async def begin(self, delivery: str, *, now: datetime) -> bool:
        """``claimed`` → ``sending`` right before the send; False when it was not claimed."""
        result = await self.deliveries.update_one(
            {"_id": delivery, "status": "claimed"},
            {"$set": {"status": "sending", "sending_at": now}},
        )
        return bool(result.modified_count)

    async def finish(
        self, delivery: str, *, status: str, now: datetime, reason: str | None = None
    ) -> bool:
        """``sending`` → ``sent``/``failed``; False when the delivery was not in flight."""
        result = await self.deliveries.update_one(
            {"_id": delivery, "status": "sending"},
            {"$set": {"status": status, "finished_at": now, "reason": reason}},
        )
        return bool(result.modified_count)

    async def release(self, deliveries: Sequence[str]) -> None:
        """Puts deliveries that were not delivered back in the queue."""
        if deliveries:
            await self.deliveries.update_many(
                {"_id": {"$in": list(deliveries)}, "status": {"$in": list(IN_FLIGHT)}},
                {"$set": {"status": "pending"}, "$unset": {"claim": "", "claimed_at": ""}},
            )

    async def recover_orphans(self, broadcast_id: ObjectId, *, claimed_before: datetime) -> int:
        """What a crashed run left behind: ``claimed`` (never attempted) goes back to the
        queue; ``sending`` (maybe delivered) is failed as ``interrupted``, never resent."""
        await self.deliveries.update_many(
            {
                "broadcast_id": broadcast_id,
                "status": "claimed",
                "claimed_at": {"$lt": claimed_before},
            },
            {"$set": {"status": "pending"}, "$unset": {"claim": "", "claimed_at": ""}},
        )
        result = await self.deliveries.update_many(
            {
                "broadcast_id": broadcast_id,
                "status": "sending",
                "claimed_at": {"$lt": claimed_before},
            },
            {"$set": {"status": "failed", "reason": "interrupted"}},
        )
        return int(result.modified_count)

    async def counts(self, broadcast_id: ObjectId) -> dict[str, int]:
        rows = await aggregate(
            self.deliveries,
            [
                {"$match": {"broadcast_id": broadcast_id}},
                {"$group": {"_id": "$status", "n": {"$sum": 1}}},
            ],
        )
        counts = dict.fromkeys(DELIVERY_STATUSES, 0)
        for row in rows:
            counts[str(row["_id"])] = int(row["n"])
        return counts
