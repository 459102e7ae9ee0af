"""``settings`` collection: runtime flags an admin can flip without a restart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.client import Document

RUNTIME_ID = "runtime"


class RuntimeSettingsRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["settings"]

    async def get(self) -> Document:
        doc: Document | None = await self.col.find_one({"_id": RUNTIME_ID})
        return doc or {"_id": RUNTIME_ID}

    async def set_fields(self, fields: dict[str, Any], *, now: datetime) -> Document:
        """Sets fields and returns the document as it was before."""
        before: Document | None = await self.col.find_one_and_update(
            {"_id": RUNTIME_ID},
            {"$set": {**fields, "updated_at": now}},
            upsert=True,
        )
        return before or {"_id": RUNTIME_ID}
