"""Cursors for ``/export``: documents stream in batches, never loaded as a whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from storage.client import Document

COLLECTIONS = ("orders", "payments", "users")

# Only what the CSV shows; drafts hold nothing worth exporting.
_QUERIES: dict[str, Document] = {
    "orders": {"status": {"$nin": ["draft", "abandoned"]}},
    "payments": {},
    "users": {},
}
_PROJECTIONS: dict[str, Document] = {
    "orders": {
        "rates": 0,
        "history": 0,
        "label_url": 0,
        "label_downloads": 0,
    },
    "payments": {"history": 0},
    "users": {},
}


class ExportRepo:
    def __init__(self, db: Any) -> None:
        self._db = db

    async def iterate(
        self,
        collection: str,
        *,
        since: datetime | None,
        until: datetime | None,
        batch_size: int,
    ) -> AsyncIterator[Document]:
        """Documents created in ``[since, until)`` in creation order (index ``created_at``)."""
        if collection not in COLLECTIONS:
            raise ValueError(f"not exportable: {collection}")
        created: Document = {}
        if since is not None:
            created["$gte"] = since
        if until is not None:
            created["$lt"] = until
        query = dict(_QUERIES[collection])
        if created:
            query["created_at"] = created
        cursor = (
            self._db[collection]
            .find(query, _PROJECTIONS[collection] or None)
            .sort("created_at", ASCENDING)
            .batch_size(batch_size)
        )
        async for doc in cursor:
            yield doc
