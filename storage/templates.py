"""``templates``: saved addresses, names unique per user; at most one default sender.

**Default sender.** The default template carries ``default_key`` = its ``user_id``; the
others have no ``default_key`` at all. A unique *sparse* index on ``default_key``
(``default_sender_unique``) therefore allows one default per user, and documents without
the field are not indexed (mongomock ignores partial indexes, so a flag plus a partial
unique index would not be enforced in the tests). Switching is two writes: unset the old
default, then set the new one. Two switches racing each other both unset, then both try
to set: the unique index lets exactly one of them win and the other gets
``DuplicateKeyError``, reported as "not switched" (``DefaultTaken``), so the user never
has two defaults and the losing tap changes nothing it did not say. A crash between the
two writes leaves no default, never two. Deleting the default template deletes the
field with it: the user then has no default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.client import Document


class DuplicateName(Exception):
    pass


class DefaultTaken(Exception):
    """Another default was set between this switch's two writes: this one lost."""


class TemplatesRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["templates"]

    async def list(self, user_id: int) -> list[Document]:
        cursor = self.col.find({"user_id": user_id}).sort("name_key", ASCENDING)
        return [doc async for doc in cursor]

    async def count(self, user_id: int) -> int:
        count: int = await self.col.count_documents({"user_id": user_id})
        return count

    async def get(self, user_id: int, template_id: ObjectId) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": template_id, "user_id": user_id})
        return doc

    async def create(
        self, user_id: int, name: str, address: dict[str, Any], *, now: datetime
    ) -> Document:
        doc: Document = {
            "_id": ObjectId(),
            "user_id": user_id,
            "name": name,
            "name_key": name.casefold(),
            "address": address,
            "created_at": now,
        }
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError:
            raise DuplicateName(name) from None
        return doc

    async def rename(self, user_id: int, template_id: ObjectId, name: str) -> Document | None:
        try:
            doc: Document | None = await self.col.find_one_and_update(
                {"_id": template_id, "user_id": user_id},
                {"$set": {"name": name, "name_key": name.casefold()}},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise DuplicateName(name) from None
        return doc

    async def delete_all(self, user_id: int) -> int:
        result = await self.col.delete_many({"user_id": user_id})
        return int(result.deleted_count)

    async def delete(self, user_id: int, template_id: ObjectId) -> bool:
        result = await self.col.delete_one({"_id": template_id, "user_id": user_id})
        return bool(result.deleted_count)

    async def default(self, user_id: int) -> Document | None:
        doc: Document | None = await self.col.find_one(
            {"default_key": user_id, "user_id": user_id}
        )
        return doc

    async def set_default(self, user_id: int, template_id: ObjectId) -> Document | None:
        """Makes the user's template the default sender (None: no such template of theirs).
        Raises ``DefaultTaken`` when a concurrent switch won (see the module docstring)."""
        if await self.get(user_id, template_id) is None:
            return None
        await self.col.update_many(
            {"user_id": user_id, "default_key": user_id, "_id": {"$ne": template_id}},
            {"$unset": {"default_key": ""}},
        )
        try:
            doc: Document | None = await self.col.find_one_and_update(
                {"_id": template_id, "user_id": user_id},
                {"$set": {"default_key": user_id}},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise DefaultTaken from None
        return doc

    async def clear_default(self, user_id: int, template_id: ObjectId) -> bool:
        """The template stops being the default sender (False: it was not the default)."""
        result = await self.col.update_one(
            {"_id": template_id, "user_id": user_id, "default_key": user_id},
            {"$unset": {"default_key": ""}},
        )
        return bool(result.modified_count)
