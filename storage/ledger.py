"""``ledger``: every balance change, exactly once, without multi-document transactions.

Write order for one money effect with idempotency key K on user U (see
docs/ARCHITECTURE.md, "Money"):

1. Look K up. Applied already → return it (a replay). Written but not applied → step 4.
2. Read U's ``balance_cents`` and ``ledger_seq``; a debit larger than the balance is refused.
3. Insert the entry ``{_id: K, user_id: U, seq: ledger_seq + 1, ...}``. The unique index on
   ``(user_id, seq)`` lets only one effect claim each position, so effects on one user are
   serialised: nothing else can change U's balance until this entry is applied, which is
   why the balance read in step 2 is still true in step 4.
4. Apply: ``users.update({_id: U, ledger_seq: seq - 1}, {$inc: balance, $set: ledger_seq})``.

A crash between 3 and 4 leaves one pending entry at ``ledger_seq + 1``; the next effect on
that user, and ``repair``, apply it first. So ``balance_cents == sum(applied entries)``
always, and ``== sum(all entries)`` once pending entries are repaired.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from storage.client import Document, aggregate


class UnknownUser(LookupError):
    pass


class LedgerKeyConflict(ValueError):
    """The key was already used for another effect (another user or amount): nothing was
    applied. ``existing`` is the entry that holds the key."""

    def __init__(self, key: str, existing: LedgerEntry) -> None:
        super().__init__(f"ledger key {key} reused for a different effect")
        self.key = key
        self.existing = existing


class InsufficientFunds(Exception):
    def __init__(self, balance_cents: int, needed_cents: int) -> None:
        super().__init__(f"balance {balance_cents} < {needed_cents}")
        self.balance_cents = balance_cents
        self.needed_cents = needed_cents


@dataclass(frozen=True)
class LedgerEntry:
    key: str
    user_id: int
    amount_cents: int
    kind: str
    seq: int
    created_at: datetime
    meta: dict[str, Any]

    @classmethod
    def from_doc(cls, doc: Document) -> LedgerEntry:
        return cls(
            key=doc["_id"],
            user_id=doc["user_id"],
            amount_cents=doc["amount_cents"],
            kind=doc["kind"],
            seq=doc["seq"],
            created_at=doc["created_at"],
            meta=dict(doc.get("meta") or {}),
        )


@dataclass(frozen=True)
class ApplyResult:
    entry: LedgerEntry
    balance_cents: int
    replayed: bool  # True when the key had already been applied before this call


@dataclass(frozen=True)
class Mismatch:
    user_id: int
    balance_cents: int
    ledger_sum_cents: int


# Bounded retries when another effect on the same user takes the position first.
_MAX_RACE_RETRIES = 50


class LedgerRepo:
    def __init__(self, db: Any) -> None:
        self.col = db["ledger"]
        self.users = db["users"]

    async def get(self, key: str) -> LedgerEntry | None:
        doc = await self.col.find_one({"_id": key})
        return LedgerEntry.from_doc(doc) if doc else None

    async def apply(
        self,
        *,
        user_id: int,
        amount_cents: int,
        kind: str,
        key: str,
        now: datetime,
        meta: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Applies one money effect exactly once; a debit never overdraws."""
        if amount_cents == 0:
            raise ValueError("a ledger entry moves money")
        for _ in range(_MAX_RACE_RETRIES):
            existing = await self.col.find_one({"_id": key})
            if existing is not None:
                user = await self._settle(existing["user_id"])
                entry = LedgerEntry.from_doc(existing)
                if entry.user_id != user_id or entry.amount_cents != amount_cents:
                    raise LedgerKeyConflict(key, entry)
                return ApplyResult(entry, int(user["balance_cents"]), replayed=True)
            user = await self._settle(user_id)
            balance = int(user.get("balance_cents", 0))
            if amount_cents < 0 and balance + amount_cents < 0:
                if await self.col.find_one({"_id": key}, {"_id": 1}) is not None:
                    continue  # a concurrent call applied this very key: answer as a replay
                raise InsufficientFunds(balance, -amount_cents)
            seq = int(user.get("ledger_seq", 0)) + 1
            doc: Document = {
                "_id": key,
                "user_id": user_id,
                "amount_cents": amount_cents,
                "kind": kind,
                "seq": seq,
                "created_at": now,
                "meta": meta or {},
            }
            try:
                await self.col.insert_one(doc)
            except DuplicateKeyError:
                continue  # the key was written meanwhile, or another effect took `seq`
            user = await self._settle(user_id)
            return ApplyResult(LedgerEntry.from_doc(doc), int(user["balance_cents"]), False)
        raise RuntimeError(f"ledger contention on user {user_id} did not settle")

    async def _settle(self, user_id: int) -> Document:
        """Applies pending entries of the user in order; returns the user afterwards."""
        while True:
            user = await self.users.find_one({"_id": user_id})
            if user is None:
                raise UnknownUser(user_id)
            seq = int(user.get("ledger_seq", 0))
            pending = await self.col.find_one({"user_id": user_id, "seq": seq + 1})
            if pending is None:
                return dict(user)
            await self.users.update_one(
                {"_id": user_id, "ledger_seq": {"$in": [seq, None]} if seq == 0 else seq},
                {
                    "$inc": {"balance_cents": pending["amount_cents"]},
                    "$set": {"ledger_seq": seq + 1},
                },
            )

    async def repair(self, user_id: int) -> Document:
        return await self._settle(user_id)

    async def history(
        self, user_id: int, *, limit: int, offset: int = 0
    ) -> tuple[list[LedgerEntry], int]:
        total: int = await self.col.count_documents({"user_id": user_id})
        cursor = (
            self.col.find({"user_id": user_id})
            .sort("seq", DESCENDING)
            .skip(offset)
            .limit(limit)
        )
        return [LedgerEntry.from_doc(doc) async for doc in cursor], total

    async def user_ids_with_entries(self) -> AsyncIterator[int]:
        for user_id in await self.col.distinct("user_id"):
            yield int(user_id)

    async def audit(self, *, repair: bool = True) -> tuple[int, list[Mismatch]]:
        """Compares every user's balance with the sum of their entries."""
        sums = {
            row["_id"]: int(row["total"])
            for row in await aggregate(
                self.col, [{"$group": {"_id": "$user_id", "total": {"$sum": "$amount_cents"}}}]
            )
        }
        mismatches: list[Mismatch] = []
        checked = 0
        async for user in self.users.find({}, {"balance_cents": 1}):
            checked += 1
            user_id = user["_id"]
            if repair and user_id in sums:
                user = await self._settle(user_id)
            balance = int(user.get("balance_cents", 0))
            total = sums.pop(user_id, 0)
            if balance != total:
                mismatches.append(Mismatch(user_id, balance, total))
        for user_id, total in sums.items():  # entries of users that do not exist
            mismatches.append(Mismatch(user_id, 0, total))
        return checked, mismatches
