"""``admin_confirmations``: one document per confirmation button an admin was shown.

The document is written when the button is shown; its id is in the button's data and keys
the effect (``adjustment:<id>`` in the ledger), so pressing the button twice, or two admins
pressing it, applies the effect once. ``pending`` → ``done`` | ``cancelled`` is conditional.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from storage.client import Document


class ConfirmationsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["admin_confirmations"]

    async def create(
        self,
        *,
        kind: str,
        actor: int,
        payload: dict[str, Any],
        now: datetime,
        expires_at: datetime,
    ) -> Document:
        doc: Document = {
            "_id": ObjectId(),
            "kind": kind,
            "actor": actor,
            "payload": payload,
            "status": "pending",
            "created_at": now,
            "expires_at": expires_at,
        }
        await self.col.insert_one(doc)
        return doc

    async def get(self, confirmation_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": confirmation_id})
        return doc

    async def close(
        self, confirmation_id: ObjectId, *, status: str, by: int, now: datetime
    ) -> Document | None:
        """``pending`` → ``status``; None when it was no longer pending."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": confirmation_id, "status": "pending"},
            {"$set": {"status": status, "closed_by": by, "closed_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return doc
