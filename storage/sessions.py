"""``sessions`` collection: conversation positions, one document per conversation key.

Document: ``{_id: "<chat>:<user>", key: [chat, user], states: {<conversation>: <state>},
expires_at, updated_at}``. ``expires_at`` is last activity + the session TTL; a document
past it is treated as absent on every read (MongoDB's TTL monitor only runs about once a
minute, and its index here keeps expired documents for a grace period so a returning
user can be told their session expired).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument

from storage.client import Document

ConversationKey = tuple[int | str, ...]


def session_id(key: Sequence[Hashable]) -> str:
    return ":".join(str(part) for part in key)


@dataclass(frozen=True)
class ExpiredSession:
    key: ConversationKey
    states: dict[str, str]


class SessionsRepo:
    def __init__(self, db: Any, *, ttl: timedelta) -> None:
        self.col = db["sessions"]
        self.ttl = ttl

    async def load_all_states(
        self, *, now: datetime
    ) -> dict[str, dict[ConversationKey, str]]:
        """Live positions of every conversation, in one pass over the live sessions."""
        out: dict[str, dict[ConversationKey, str]] = {}
        cursor = self.col.find({"expires_at": {"$gt": now}}, {"key": 1, "states": 1})
        async for doc in cursor:
            key = tuple(doc["key"])
            for conversation, state in (doc.get("states") or {}).items():
                out.setdefault(conversation, {})[key] = state
        return out

    async def set_state(
        self, conversation: str, key: ConversationKey, state: str | None, *, now: datetime
    ) -> None:
        sid = session_id(key)
        if state is None:
            await self.col.update_one(
                {"_id": sid},
                {"$unset": {f"states.{conversation}": "", f"data.{conversation}": ""}},
            )
            # Drop the document once no conversation is left in it.
            await self.col.delete_one({"_id": sid, "states": {}, "data": {"$in": [{}, None]}})
            return
        await self.col.update_one(
            {"_id": sid},
            {
                "$set": {
                    f"states.{conversation}": str(state),
                    "key": list(key),
                    "expires_at": now + self.ttl,
                    "updated_at": now,
                }
            },
            upsert=True,
        )

    async def get_data(self, key: ConversationKey, conversation: str) -> dict[str, object]:
        """Small per-conversation values (e.g. a chosen topic) kept with the position."""
        doc = await self.col.find_one({"_id": session_id(key)}, {f"data.{conversation}": 1})
        if not doc:
            return {}
        return dict(doc.get("data", {}).get(conversation, {}))

    async def set_data(
        self, key: ConversationKey, conversation: str, data: dict[str, object], *, now: datetime
    ) -> None:
        await self.col.update_one(
            {"_id": session_id(key)},
            {
                "$set": {
                    f"data.{conversation}": data,
                    "key": list(key),
                    "expires_at": now + self.ttl,
                    "updated_at": now,
                },
                "$setOnInsert": {"states": {}},
            },
            upsert=True,
        )

    async def clear_data(self, key: ConversationKey) -> None:
        """Forgets the small per-conversation values (data deletion); positions stay."""
        await self.col.update_one({"_id": session_id(key)}, {"$set": {"data": {}}})

    async def get(self, key: ConversationKey) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": session_id(key)})
        return doc

    async def touch(self, key: ConversationKey, *, now: datetime) -> ExpiredSession | None:
        """Extends a live session; claims and returns one that had already expired.

        The common case, a live session, is one update; only when it matched nothing (no
        session, or an expired one) is the expired one claimed."""
        sid = session_id(key)
        extended = await self.col.update_one(
            {"_id": sid, "expires_at": {"$gt": now}}, {"$set": {"expires_at": now + self.ttl}}
        )
        if extended.matched_count:
            return None
        expired: Document | None = await self.col.find_one_and_update(
            {"_id": sid, "expires_at": {"$lte": now}, "states": {"$ne": {}}},
            {"$set": {"states": {}, "expires_at": now + self.ttl, "updated_at": now}},
            return_document=ReturnDocument.BEFORE,
        )
        if expired is not None:
            return ExpiredSession(key=tuple(expired["key"]), states=dict(expired["states"]))
        return None

    async def claim_expired(self, *, now: datetime, limit: int) -> list[ExpiredSession]:
        """Claims expired sessions that still hold a position (each claimed once)."""
        out: list[ExpiredSession] = []
        cursor = self.col.find(
            {"expires_at": {"$lte": now}, "states": {"$nin": [{}, None]}}, {"_id": 1}
        ).limit(limit)
        ids = [doc["_id"] async for doc in cursor]
        for sid in ids:
            doc: Document | None = await self.col.find_one_and_update(
                {"_id": sid, "expires_at": {"$lte": now}, "states": {"$ne": {}}},
                {"$set": {"states": {}}},
                return_document=ReturnDocument.BEFORE,
            )
            if doc is not None:
                out.append(ExpiredSession(key=tuple(doc["key"]), states=dict(doc["states"])))
        return out

    async def count_live(self, *, now: datetime) -> int:
        count: int = await self.col.count_documents({"expires_at": {"$gt": now}})
        return count

    async def purge(self, *, before: datetime) -> int:
        result = await self.col.delete_many({"expires_at": {"$lte": before}})
        return int(result.deleted_count)
