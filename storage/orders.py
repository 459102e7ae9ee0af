"""``orders``: label orders from draft to purchased, every status change conditional.

``draft`` → ``purchasing`` → ``purchased`` → ``refunded``;
``purchasing`` → ``failed`` (carrier refused or recovery found no label; the debit, if
any, is compensated after the transition: ``compensation_pending`` marks the gap);
``purchasing`` → ``draft`` (balance short: nothing was debited).
A draft is written at every step of the conversation and expires with the session.

Tracking of a purchased label (``services/tracking.py``): ``tracking_due_at`` (indexed,
removed when tracking ends) says when to ask the carrier next; ``tracking`` holds the last
status, when it was checked, consecutive failures and why it ended; ``tracking_milestones``
the milestones already queued for the customer; ``first_scan_at`` the carrier's first scan
(the label is used: no refund). Refund reminders and automatic refunds mark the order
(``refund_reminded_at``, ``auto_refund_checked_at``) so each happens once.

The after-purchase receipt is claimed once per order (``receipt_sent_at``) by whichever
delivery sends it first: the purchase itself or the ``orders:deliver-labels`` job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, ReturnDocument

from storage.client import Document


class OrdersRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["orders"]

    async def get(self, order_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": order_id})
        return doc

    async def active_draft(self, user_id: int, *, now: datetime) -> Document | None:
        doc: Document | None = await self.col.find_one(
            # A bulk job's rows are drafts too, but never the conversation's draft.
            {
                "user_id": user_id,
                "status": "draft",
                "expires_at": {"$gt": now},
                "bulk_job_id": None,
            },
            sort=[("created_at", DESCENDING)],
        )
        return doc

    async def create_draft(self, user_id: int, *, now: datetime, expires_at: datetime) -> Document:
        doc: Document = {
            "_id": ObjectId(),
            "user_id": user_id,
            "status": "draft",
            "from_address": {},
            "to_address": {},
            "parcel": {},
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
        }
        await self.col.insert_one(doc)
        return doc

    async def abandon_drafts(self, user_id: int, *, now: datetime) -> None:
        await self.col.update_many(
            {"user_id": user_id, "status": "draft", "bulk_job_id": None},
            {"$set": {"status": "abandoned", "updated_at": now}},
        )

    async def update_draft(
        self,
        order_id: ObjectId,
        *,
        set_fields: dict[str, Any],
        unset_fields: tuple[str, ...] = (),
        now: datetime,
        expires_at: datetime,
        match: dict[str, Any] | None = None,
    ) -> Document | None:
        """``match`` adds conditions (e.g. the validation a button showed is still the
        draft's): the update applies only while they hold, else None."""
        update: dict[str, Any] = {
            "$set": {**set_fields, "updated_at": now, "expires_at": expires_at}
        }
        if unset_fields:
            update["$unset"] = {name: "" for name in unset_fields}
        doc: Document | None = await self.col.find_one_and_update(
            {**(match or {}), "_id": order_id, "status": "draft"},
            update,
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def next_quote_seq(self, order_id: ObjectId) -> int | None:
        """Claims the next quote number of an open draft (1, 2, …); None when not a draft."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": order_id, "status": "draft"},
            {"$inc": {"quote_seq": 1}},
            projection={"quote_seq": 1},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else int(doc["quote_seq"])

    async def transition(
        self,
        order_id: ObjectId,
        *,
        from_status: str,
        to_status: str,
        now: datetime,
        fields: dict[str, Any] | None = None,
        extra_filter: dict[str, Any] | None = None,
    ) -> Document | None:
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": order_id, "status": from_status, **(extra_filter or {})},
            {"$set": {"status": to_status, "updated_at": now, **(fields or {})}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def set_fields(self, order_id: ObjectId, fields: dict[str, Any]) -> None:
        await self.col.update_one({"_id": order_id}, {"$set": fields})

    async def stuck_purchasing(self, *, started_before: datetime, limit: int) -> list[Document]:
        cursor = self.col.find(
            {"status": "purchasing", "purchase_started_at": {"$lte": started_before}}
        ).limit(limit)
        return [doc async for doc in cursor]

    async def compensation_pending(self, *, failed_before: datetime, limit: int) -> list[Document]:
        """Failed orders whose compensation may not have been credited (a crash between
        the transition to ``failed`` and the credit)."""
        cursor = self.col.find(
            {"compensation_pending": True, "failed_at": {"$lte": failed_before}}
        ).limit(limit)
        return [doc async for doc in cursor]

    async def compensation_settled(self, order_id: ObjectId, *, now: datetime) -> None:
        await self.col.update_one(
            {"_id": order_id, "compensation_pending": True},
            {"$unset": {"compensation_pending": ""}, "$set": {"compensation_settled_at": now}},
        )

    async def undelivered_labels(
        self, *, purchased_before: datetime, limit: int
    ) -> list[Document]:
        cursor = self.col.find(
            {
                "status": "purchased",
                "label_delivered_at": None,
                "bulk_job_id": None,  # a bulk job delivers its labels as one merged PDF
                "purchased_at": {"$lte": purchased_before},
            }
        ).limit(limit)
        return [doc async for doc in cursor]

    async def claim_receipt(self, order_id: ObjectId, *, now: datetime) -> bool:
        """Claims the after-purchase receipt of a bought label; False when it was claimed
        already (another delivery carries it)."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": order_id, "status": "purchased", "receipt_sent_at": {"$exists": False}},
            {"$set": {"receipt_sent_at": now}},
            projection={"_id": 1},
        )
        return doc is not None

    async def release_receipt(self, order_id: ObjectId, *, claimed_at: datetime) -> None:
        """Gives a claim back whose message certainly did not reach the chat, so the next
        delivery carries the receipt; only the claim made at ``claimed_at``."""
        await self.col.update_one(
            {"_id": order_id, "receipt_sent_at": claimed_at},
            {"$unset": {"receipt_sent_at": ""}},
        )

    async def history(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        query = {"user_id": user_id, "status": {"$in": ["purchased", "refunded", "purchasing"]}}
        total: int = await self.col.count_documents(query)
        cursor = self.col.find(query).sort("created_at", DESCENDING).skip(offset).limit(limit)
        return [doc async for doc in cursor], total

    # -- tracking ------------------------------------------------------------------------

    async def due_for_tracking(self, *, now: datetime, limit: int) -> list[Document]:
        """Purchased labels whose next tracking check is due, most overdue first."""
        cursor = (
            self.col.find({"tracking_due_at": {"$lte": now}, "status": "purchased"})
            .sort("tracking_due_at", 1)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def claim_tracking(
        self, order_id: ObjectId, *, due_at: datetime, until: datetime
    ) -> Document | None:
        """Moves a due check to ``until`` (a lease: a run that dies mid-check is retried
        then); None when another run claimed it or it is no longer due."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": order_id, "tracking_due_at": due_at, "status": "purchased"},
            {"$set": {"tracking_due_at": until}},
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def record_tracking(
        self,
        order_id: ObjectId,
        *,
        tracking: dict[str, Any],
        next_due: datetime | None,
        milestones: Sequence[str] = (),
        first_scan_at: datetime | None = None,
    ) -> None:
        """The outcome of one check; ``next_due`` None ends tracking."""
        update: dict[str, Any] = {
            "$set": {f"tracking.{name}": value for name, value in tracking.items()}
        }
        if next_due is None:
            update["$unset"] = {"tracking_due_at": ""}
        else:
            update["$set"]["tracking_due_at"] = next_due
        if milestones:
            update["$addToSet"] = {"tracking_milestones": {"$each": list(milestones)}}
        if first_scan_at is not None:
            update["$min"] = {"first_scan_at": first_scan_at}
        await self.col.update_one({"_id": order_id}, update)

    async def adopt_untracked(self, *, since: datetime, now: datetime, limit: int) -> int:
        """Labels bought since ``since`` that were never tracked (bought before tracking
        existed) become due now; returns how many (at most ``limit`` a call)."""
        cursor = self.col.find(
            {
                "status": "purchased",
                "purchased_at": {"$gte": since},
                "tracking_due_at": {"$exists": False},
                "tracking.ended": {"$exists": False},
            },
            projection={"_id": 1},
        ).limit(limit)
        ids = [doc["_id"] async for doc in cursor]
        if not ids:
            return 0
        result = await self.col.update_many(
            {"_id": {"$in": ids}, "tracking_due_at": {"$exists": False}},
            {"$set": {"tracking_due_at": now}},
        )
        return int(result.modified_count)

    async def stop_tracking(self, order_id: ObjectId) -> None:
        """A refunded (voided) label is not followed any more."""
        await self.col.update_one({"_id": order_id}, {"$unset": {"tracking_due_at": ""}})

    async def mark_first_scan(self, order_id: ObjectId, at: datetime) -> None:
        await self.col.update_one({"_id": order_id}, {"$min": {"first_scan_at": at}})

    # -- refund reminders and automatic refunds ---------------------------------------------

    async def unused_purchased_between(
        self, *, start: datetime, end: datetime, unset: str, limit: int
    ) -> list[Document]:
        """Purchased, never scanned labels bought in [start, end) whose flag ``unset`` is
        not set yet (index ``status_purchased_at``)."""
        cursor = self.col.find(
            {
                "status": "purchased",
                "purchased_at": {"$gte": start, "$lt": end},
                "first_scan_at": None,
                unset: None,
            }
        ).limit(limit)
        return [doc async for doc in cursor]

    async def mark_once(self, order_id: ObjectId, field: str, *, now: datetime) -> bool:
        """Sets ``field`` to ``now`` if unset; False when it was set already (done once)."""
        result = await self.col.update_one(
            {"_id": order_id, field: None}, {"$set": {field: now}}
        )
        return bool(result.modified_count)

    async def by_tracking(self, tracking_number: str) -> Document | None:
        doc: Document | None = await self.col.find_one({"tracking_number": tracking_number})
        return doc

    async def by_label(self, label_id: str) -> Document | None:
        doc: Document | None = await self.col.find_one({"label_id": label_id})
        return doc

    # -- data deletion ----------------------------------------------------------------------

    async def open_for_user(self, user_id: int) -> list[Document]:
        """Orders whose money or label is still moving: a purchase in flight, a failed one
        not yet compensated, a bought label not yet delivered to the chat."""
        cursor = self.col.find(
            {
                "user_id": user_id,
                "$or": [
                    {"status": "purchasing"},
                    {"compensation_pending": True},
                    {"status": "purchased", "label_delivered_at": None},
                ],
            }
        ).limit(10)
        return [doc async for doc in cursor]

    async def delete_drafts(self, user_id: int) -> int:
        """Drafts and abandoned drafts: nothing was paid, so nothing is kept."""
        result = await self.col.delete_many(
            {"user_id": user_id, "status": {"$in": ["draft", "abandoned"]}}
        )
        return int(result.deleted_count)

    @staticmethod
    def _personal(user_id: int) -> Document:
        return {
            "user_id": user_id,
            "anonymised_by": None,
            "status": {"$nin": ["draft", "abandoned"]},
        }

    async def with_personal_data(self, user_id: int, *, limit: int) -> list[Document]:
        """Orders past the draft stage whose addresses are still there."""
        cursor = self.col.find(self._personal(user_id)).limit(limit)
        return [doc async for doc in cursor]

    async def count_with_personal_data(self, user_id: int) -> int:
        count: int = await self.col.count_documents(self._personal(user_id))
        return count

    async def anonymise(
        self, order_id: ObjectId, *, from_address: Document, to_address: Document,
        by: ObjectId, now: datetime,
    ) -> None:
        """Replaces the addresses (names, streets, phones, e-mails), drops the carrier's
        address checks (their suggested forms are addresses too) and forgets the label file
        (the PDF shows both addresses); amounts, dates, carrier, service and tracking
        number stay."""
        await self.col.update_one(
            {"_id": order_id, "anonymised_by": None},
            {
                "$set": {
                    "from_address": from_address,
                    "to_address": to_address,
                    "anonymised_by": by,
                    "anonymised_at": now,
                },
                "$unset": {
                    "label_file_id": "",
                    "label_url": "",
                    "label_downloads": "",
                    "from_validation": "",
                    "to_validation": "",
                },
            },
        )

    async def count_anonymised(self, user_id: int, by: ObjectId) -> int:
        count: int = await self.col.count_documents({"user_id": user_id, "anonymised_by": by})
        return count

    async def recent_for_user(self, user_id: int, *, limit: int) -> list[Document]:
        """The user's latest orders past the draft stage (admin lookup)."""
        cursor = (
            self.col.find({"user_id": user_id, "status": {"$nin": ["draft", "abandoned"]}})
            .sort("created_at", DESCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    # -- bulk jobs: every row is an order linked to its job ---------------------------------

    async def insert_bulk_rows(self, docs: list[Document]) -> None:
        if docs:
            await self.col.insert_many(docs, ordered=False)

    async def bulk_rows(
        self, job_id: ObjectId, *, status: str | None = None
    ) -> list[Document]:
        query: dict[str, Any] = {"bulk_job_id": job_id}
        if status is not None:
            query["status"] = status
        cursor = self.col.find(query).sort("bulk_row", 1)
        return [doc async for doc in cursor]

    async def mark_bulk_delivered(self, job_id: ObjectId, *, now: datetime) -> None:
        """The job's merged PDF reached the chat: its labels are delivered."""
        await self.col.update_many(
            {"bulk_job_id": job_id, "status": "purchased", "label_delivered_at": None},
            {"$set": {"label_delivered_at": now}},
        )

    async def delete_bulk_drafts(self, job_id: ObjectId) -> None:
        """Rows inserted by a quote a crash interrupted (never shown, never quoted)."""
        await self.col.delete_many({"bulk_job_id": job_id, "status": "draft"})

    async def abandon_bulk_rows(
        self, job_id: ObjectId, *, now: datetime, reason: str
    ) -> None:
        await self.col.update_many(
            {"bulk_job_id": job_id, "status": "draft"},
            {"$set": {"status": "abandoned", "updated_at": now, "bulk_error": reason}},
        )
