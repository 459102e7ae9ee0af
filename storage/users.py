"""``users`` collection: one document per Telegram user, ``_id`` = user id."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from storage.client import Document


@dataclass(frozen=True)
class RegisterResult:
    user: Document
    created: bool


class UsersRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["users"]

    async def get(self, user_id: int) -> Document | None:
        doc: Document | None = await self.col.find_one({"_id": user_id})
        return doc

    async def register(
        self,
        user_id: int,
        *,
        language: str,
        username: str | None,
        first_name: str,
        now: datetime,
    ) -> RegisterResult:
        """Creates the user on first contact, refreshes profile fields on later ones."""
        user: Document = await self.col.find_one_and_update(
            {"_id": user_id},
            {
                "$set": {"username": username, "first_name": first_name, "last_seen_at": now},
                # Counts the user's updates; 1 after the upsert means this call created them.
                "$inc": {"update_count": 1},
                "$setOnInsert": {
                    "language": language,
                    "balance_cents": 0,
                    "blocked": False,
                    "notify_opt_out": False,
                    "bot_blocked_at": None,
                    "created_at": now,
                },
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        created = user.get("update_count") == 1
        return RegisterResult(user=user, created=created)

    async def set_language(self, user_id: int, language: str) -> None:
        await self.col.update_one({"_id": user_id}, {"$set": {"language": language}})

    async def set_blocked(self, user_id: int, blocked: bool) -> Document | None:
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": user_id},
            {"$set": {"blocked": blocked}},
            return_document=ReturnDocument.BEFORE,
        )
        return doc

    async def mark_bot_blocked(self, user_id: int, now: datetime | None) -> None:
        """Records that the user blocked the bot (``now``) or wrote again (``None``)."""
        await self.col.update_one({"_id": user_id}, {"$set": {"bot_blocked_at": now}})

    async def by_username(self, username: str) -> Document | None:
        """Exact match first (index ``username``), then case-insensitive."""
        doc: Document | None = await self.col.find_one({"username": username})
        if doc is None:
            doc = await self.col.find_one(
                {"username": {"$regex": f"^{re.escape(username)}$", "$options": "i"}}
            )
        return doc

    async def set_discount(self, user_id: int, percent: int) -> Document | None:
        """Sets ``discount_percent``; returns the user as it was before (None: unknown)."""
        doc: Document | None = await self.col.find_one_and_update(
            {"_id": user_id},
            {"$set": {"discount_percent": percent}},
            return_document=ReturnDocument.BEFORE,
        )
        return doc

    async def accept_terms(self, user_id: int, version: str, *, now: datetime) -> bool:
        """Records the acceptance of terms ``version`` (once per version; history kept)."""
        result = await self.col.update_one(
            {"_id": user_id, "terms_version": {"$ne": version}},
            {
                "$set": {"terms_version": version, "terms_accepted_at": now},
                "$push": {"terms_history": {"$each": [{"version": version, "at": now}],
                                            "$slice": -20}},
            },
        )
        return bool(result.modified_count)

    async def erase_profile(self, user_id: int, *, now: datetime) -> None:
        """Data deletion: the Telegram name and username go; the account (balance, ledger
        position, language, terms acceptance) stays."""
        await self.col.update_one(
            {"_id": user_id},
            {"$set": {"username": None, "first_name": "", "data_deleted_at": now}},
        )

    async def set_notify_opt_out(self, user_id: int, opt_out: bool) -> None:
        await self.col.update_one({"_id": user_id}, {"$set": {"notify_opt_out": opt_out}})


    async def set_label_format(self, user_id: int, key: str) -> None:
        await self.col.update_one({"_id": user_id}, {"$set": {"label_format": key}})

    async def set_auto_refund(self, user_id: int, enabled: bool) -> None:
        await self.col.update_one({"_id": user_id}, {"$set": {"auto_refund": enabled}})
