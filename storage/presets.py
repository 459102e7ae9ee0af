"""``parcel_presets``: saved parcels (name, weight, size), names unique per user.

A preset holds the parcel as the order draft stores it (``weight_oz`` as an int, the three
sides as decimal strings in inches), already validated by ``services/parcel.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.client import Document


class DuplicatePresetName(Exception):
    pass


def name_key(name: str) -> str:
    """What makes two names the same: case-folded, surrounding spaces trimmed."""
    return name.strip().casefold()


class PresetsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["parcel_presets"]

    async def list(self, user_id: int) -> list[Document]:
        cursor = self.col.find({"user_id": user_id}).sort("name_key", ASCENDING)
        return [doc async for doc in cursor]

    async def count(self, user_id: int) -> int:
        count: int = await self.col.count_documents({"user_id": user_id})
        return count

    async def get(self, user_id: int, preset_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": preset_id, "user_id": user_id})
        return doc

    async def create(
        self, user_id: int, name: str, parcel: dict[str, Any], *, now: datetime
    ) -> Document:
        doc: Document = {
            "_id": ObjectId(),
            "user_id": user_id,
            "name": name,
            "name_key": name_key(name),
            "parcel": parcel,
            "created_at": now,
        }
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError:
            raise DuplicatePresetName(name) from None
        return doc

    async def rename(self, user_id: int, preset_id: ObjectId, name: str) -> Document | None:
        try:
            doc: Document | None = await self.col.find_one_and_update(
                {"_id": preset_id, "user_id": user_id},
                {"$set": {"name": name, "name_key": name_key(name)}},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise DuplicatePresetName(name) from None
        return doc

    async def delete(self, user_id: int, preset_id: ObjectId) -> bool:
        result = await self.col.delete_one({"_id": preset_id, "user_id": user_id})
        return bool(result.deleted_count)

    async def delete_all(self, user_id: int) -> int:
        result = await self.col.delete_many({"user_id": user_id})
        return int(result.deleted_count)
