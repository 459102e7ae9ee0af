"""``payments``: top-up invoices (OxaPay, card, Stars), one document per invoice.

Status machine (every transition is a conditional update):
``creating`` → ``pending`` → ``paid`` | ``expired`` | ``cancelled`` | ``suspicious`` | ``failed``;
``suspicious`` → ``paid`` (an admin credits the received amount); ``paid`` → ``refunded``.
A payment that is ``cancelled`` or ``expired`` locally but reported paid by the provider is
still credited: money that arrived is never ignored.

Follow-up work that must survive a crash lives on the payment itself: ``pending_notices``
(customer notices of credits not yet queued), ``credit_claim`` (a further credit of a paid
payment being applied, one at a time) and ``followup_at`` (set while either is present, so
the repair sweep finds them by index). A Stars refund carries ``refund_started_at`` (one
refund at a time), ``refund_attempts`` and ``refund_state`` (``unknown`` when Telegram's
answer never came).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument

from storage.client import Document, aggregate

OPEN_STATUSES = ("creating", "pending")
CREDITABLE_FROM = ("creating", "pending", "cancelled", "expired", "failed")
STARS_CURSOR_ID = "stars_cursor"  # in ``settings``: how far the Stars history was read


class PaymentsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["payments"]
        self.events = db["payment_events"]
        self.settings = db["settings"]

    async def create(self, doc: Document) -> Document:
        doc = {"_id": ObjectId(), **doc}
        doc.setdefault("provider_key", _provider_key(doc))
        await self.col.insert_one(doc)
        return doc

    async def set_provider_ref(self, payment_id: ObjectId, provider: str, ref: str) -> None:
        """Records the provider's reference; unique per provider (a clash raises)."""
        await self.col.update_one(
            {"_id": payment_id},
            {"$set": {"provider_ref": ref, "provider_key": f"{provider}:{ref}"}},
        )

    async def claim_provider_ref(
        self, payment_id: ObjectId, provider: str, ref: str, *, fields: dict[str, Any]
    ) -> Document | None:
        """Records the provider's reference if none is recorded yet (the first charge wins);
        returns the payment then, or None when it already had one."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": payment_id, "provider_ref": None},
            {"$set": {"provider_ref": ref, "provider_key": f"{provider}:{ref}", **fields}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def get(self, payment_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": payment_id})
        return doc

    async def by_ref(self, provider: str, provider_ref: str) -> Document | None:
        doc: Document | None = await self.col.find_one(
            {"provider": provider, "provider_ref": provider_ref}
        )
        return doc

    async def transition(
        self,
        payment_id: ObjectId,
        *,
        from_statuses: Sequence[str],
        to_status: str,
        now: datetime,
        fields: dict[str, Any] | None = None,
        notice: dict[str, Any] | None = None,
    ) -> Document | None:
        """Moves the payment to ``to_status`` only from one of ``from_statuses``; with
        ``notice``, the customer notice to queue is recorded in the same write."""
        push: dict[str, Any] = {"history": {"status": to_status, "at": now}}
        extra: dict[str, Any] = {}
        if notice is not None:
            push["pending_notices"] = notice
            extra["followup_at"] = now
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": payment_id, "status": {"$in": list(from_statuses)}},
            {
                "$set": {"status": to_status, "updated_at": now, **(fields or {}), **extra},
                "$push": push,
            },
            return_document=ReturnDocument.AFTER,
        )
        return doc

    # -- further credits of a paid payment and pending notices ---------------------------

    async def claim_credit(
        self,
        payment_id: ObjectId,
        *,
        credited_cents: int,
        claim: dict[str, Any],
        now: datetime,
    ) -> Document | None:
        """Reserves a further credit of a paid payment; one at a time, from a known total."""
        doc: Document | None = await self.col.find_one_and_update(
            {
                "_id": payment_id,
                "status": "paid",
                "credited_cents": credited_cents,
                "credit_claim": None,
            },
            {"$set": {"credit_claim": claim, "followup_at": now, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def complete_credit(
        self,
        payment_id: ObjectId,
        *,
        key: str,
        to_cents: int,
        notice: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Records a claimed credit as applied (the ledger entry exists) and its notice."""
        result = await self.col.update_one(
            {"_id": payment_id, "credit_claim.key": key},
            {
                "$set": {
                    "credited_cents": to_cents,
                    "credit_claim": None,
                    "followup_at": now,
                    "updated_at": now,
                },
                "$push": {
                    "pending_notices": notice,
                    "history": {"status": "credited_more", "at": now, "total_cents": to_cents},
                },
            },
        )
        return bool(result.modified_count)

    async def push_notice(
        self, payment_id: ObjectId, notice: dict[str, Any], *, now: datetime
    ) -> None:
        """Records a notice to queue, unless one with the same key is already recorded."""
        await self.col.update_one(
            {"_id": payment_id, "pending_notices.key": {"$ne": notice["key"]}},
            {"$push": {"pending_notices": notice}, "$set": {"followup_at": now}},
        )

    async def add_message(
        self, payment_id: ObjectId, user_id: int, chat_id: int, message_id: int
    ) -> Document | None:
        """Records a message showing this payment's invoice buttons (``messages``); the
        payment as it is after the write, None when it is not this user's."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": payment_id, "user_id": user_id},
            {"$addToSet": {"messages": {"chat_id": chat_id, "message_id": message_id}}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def pull_notice(self, payment_id: ObjectId, key: str) -> None:
        """The notice was queued (the outbox deduplicates it): forget it; and once nothing
        is left to follow up, clear ``followup_at``."""
        await self.col.update_one(
            {"_id": payment_id}, {"$pull": {"pending_notices": {"key": key}}}
        )
        await self.col.update_one(
            {"_id": payment_id, "pending_notices": {"$size": 0}, "credit_claim": None},
            {"$set": {"followup_at": None}},
        )

    async def followups_due(self, *, before: datetime, limit: int) -> list[Document]:
        """Payments with a notice or a further credit left unfinished since ``before``."""
        cursor = (
            self.col.find({"followup_at": {"$lte": before}})
            .sort("followup_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    # -- Stars refunds ----------------------------------------------------------------------

    async def claim_refund(self, payment_id: ObjectId, *, now: datetime) -> Document | None:
        """Marks a paid payment as being refunded; only one refund runs at a time."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": payment_id, "status": "paid", "refund_started_at": None},
            {
                "$set": {
                    "refund_started_at": now,
                    "refund_state": "started",
                    "refund_unknown_alerted_at": None,
                },
                "$inc": {"refund_attempts": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def claim_refund_retry(
        self, payment_id: ObjectId, *, started_before: datetime, now: datetime
    ) -> Document | None:
        """Takes over a refund whose outcome is unknown (Telegram's answer was lost) or
        that started before ``started_before`` and never finished (a crash between the
        debit and the call): the same attempt is tried again."""
        doc: Document | None = await self.col.find_one_and_update(
            {
                "_id": payment_id,
                "status": "paid",
                "refund_started_at": {"$ne": None},
                "$or": [
                    {"refund_state": "unknown"},
                    {"refund_started_at": {"$lte": started_before}},
                ],
            },
            {
                "$set": {
                    "refund_started_at": now,
                    "refund_state": "started",
                    "refund_unknown_alerted_at": None,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def mark_refund_unknown(self, payment_id: ObjectId, *, now: datetime) -> None:
        await self.col.update_one(
            {"_id": payment_id, "status": "paid", "refund_started_at": {"$ne": None}},
            {"$set": {"refund_state": "unknown", "refund_unknown_at": now}},
        )

    async def release_refund(self, payment_id: ObjectId) -> None:
        await self.col.update_one(
            {"_id": payment_id, "status": "paid"},
            {"$set": {"refund_started_at": None, "refund_state": None}},
        )

    async def refunds_unsettled(self, *, started_before: datetime, limit: int) -> list[Document]:
        """Stars refunds started before ``started_before`` and still not settled, whose
        admins were not alerted yet."""
        cursor = self.col.find(
            {
                "refund_started_at": {"$lte": started_before},
                "status": "paid",
                "refund_unknown_alerted_at": None,
            }
        ).limit(limit)
        return [doc async for doc in cursor]

    async def claim_refund_alert(self, payment_id: ObjectId, *, now: datetime) -> bool:
        result = await self.col.update_one(
            {"_id": payment_id, "status": "paid", "refund_unknown_alerted_at": None},
            {"$set": {"refund_unknown_alerted_at": now}},
        )
        return bool(result.modified_count)

    # -- the Stars history cursor ------------------------------------------------------------

    async def stars_cursor(self) -> Document | None:
        doc: Document | None = await self.settings.find_one({"_id": STARS_CURSOR_ID})
        return doc

    async def save_stars_cursor(self, *, offset: int, window: list[str], now: datetime) -> None:
        """``offset``: transactions read; ``window``: the keys of the last ones read, in
        order (bounded by the caller), re-read next time to detect a changed history."""
        await self.settings.update_one(
            {"_id": STARS_CURSOR_ID},
            {"$set": {"offset": offset, "window": window, "updated_at": now}},
            upsert=True,
        )

    async def set_fields(self, payment_id: ObjectId, fields: dict[str, Any]) -> None:
        await self.col.update_one({"_id": payment_id}, {"$set": fields})

    async def record_event(
        self, *, provider: str, provider_ref: str, status: str, source: str, now: datetime
    ) -> bool:
        """Counts a provider notification; False when the same one was seen before."""
        key = f"{provider}:{provider_ref}:{status}:{source}"
        result = await self.events.update_one(
            {"_id": key},
            {"$inc": {"count": 1}, "$setOnInsert": {"first_at": now}, "$set": {"last_at": now}},
            upsert=True,
        )
        return result.upserted_id is not None

    async def pending_for_user(self, user_id: int) -> Document | None:
        doc: Document | None = await self.col.find_one(
            {"user_id": user_id, "status": {"$in": list(OPEN_STATUSES)}},
            sort=[("created_at", DESCENDING)],
        )
        return doc

    async def open_for_user(self, user_id: int) -> list[Document]:
        """Payments not settled yet: waiting, under review, or a Stars refund running."""
        cursor = self.col.find(
            {
                "user_id": user_id,
                "$or": [
                    {"status": {"$in": [*OPEN_STATUSES, "suspicious"]}},
                    {"status": "paid", "refund_started_at": {"$ne": None}},
                ],
            }
        ).limit(10)
        return [doc async for doc in cursor]

    async def open_payments(self, provider: str, *, limit: int) -> list[Document]:
        cursor = (
            self.col.find({"provider": provider, "status": {"$in": list(OPEN_STATUSES)}})
            .sort("created_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def expired_open(
        self, provider: str, *, before: datetime, limit: int
    ) -> list[Document]:
        """Open invoices of ``provider`` whose ``expires_at`` is before ``before``."""
        cursor = (
            self.col.find(
                {
                    "provider": provider,
                    "status": {"$in": list(OPEN_STATUSES)},
                    "expires_at": {"$lte": before},
                }
            )
            .sort("created_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def claim_stale_alert(
        self, *, field: str, older_than: datetime, now: datetime, limit: int
    ) -> list[Document]:
        """Marks (once) open payments created before ``older_than`` and returns them."""
        cursor = self.col.find(
            {
                "status": {"$in": list(OPEN_STATUSES)},
                "created_at": {"$lte": older_than},
                field: None,
            },
            {"_id": 1},
        ).limit(limit)
        ids = [doc["_id"] async for doc in cursor]
        claimed: list[Document] = []
        for pid in ids:
            doc = await self.col.find_one_and_update(
                {"_id": pid, field: None, "status": {"$in": list(OPEN_STATUSES)}},
                {"$set": {field: now}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                claimed.append(doc)
        return claimed

    async def list_open(self, *, limit: int) -> list[Document]:
        cursor = (
            self.col.find({"status": {"$in": [*OPEN_STATUSES, "suspicious"]}})
            .sort("created_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def duplicate_stats(self) -> tuple[int, int]:
        """(notifications received, of which duplicates)."""
        rows = await aggregate(
            self.events,
            [{"$group": {"_id": None, "total": {"$sum": "$count"}, "unique": {"$sum": 1}}}],
        )
        if not rows:
            return 0, 0
        total, unique = int(rows[0]["total"]), int(rows[0]["unique"])
        return total, total - unique

    async def recent_by_provider(self, provider: str, *, limit: int) -> list[Document]:
        """The latest payments of one rail (admin view; index ``provider_created``)."""
        cursor = (
            self.col.find({"provider": provider}).sort("created_at", DESCENDING).limit(limit)
        )
        return [doc async for doc in cursor]

    async def recent_for_user(self, user_id: int, *, limit: int) -> list[Document]:
        """The user's latest payments (admin lookup; index ``user_created``)."""
        cursor = self.col.find({"user_id": user_id}).sort("created_at", DESCENDING).limit(limit)
        return [doc async for doc in cursor]


def _provider_key(doc: Document) -> str:
    ref = doc.get("provider_ref")
    return f"{doc['provider']}:{ref}" if ref else f"pending:{doc['_id']}"
