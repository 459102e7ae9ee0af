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

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class UserCheck:
    exists: bool  # False: entries of a user id with no account
    mismatch: Mismatch | None
    pending: bool  # an entry is written but not yet applied (mid-apply, or a crash)


@dataclass
class AuditReport:
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    # Users whose ledger moved during every attempt: not checked, not a mismatch.
    unsettled: list[int] = field(default_factory=list)


# Bounded retries when another effect on the same user takes the position first.
_MAX_RACE_RETRIES = 50
# The audit checks a user again when an effect was applied during the check, this often.
_AUDIT_ATTEMPTS = 5
_AUDIT_PAGE = 500


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
        """``(users checked, mismatches)``; see ``audit_report``."""
        report = await self.audit_report(repair=repair)
        return report.checked, report.mismatches

    async def audit_report(self, *, repair: bool = True) -> AuditReport:
        """Checks every user on its own, consistently, so it can run on a live system.

        Users are read in ``_id`` pages (no cursor held open across the checks), then any
        user id that has entries but no account. ``repair`` applies pending entries first.
        """
        report = AuditReport()
        seen: set[int] = set()
        last: int | None = None
        while True:
            query: Document = {} if last is None else {"_id": {"$gt": last}}
            cursor = self.users.find(query, {"_id": 1}).sort("_id", 1).limit(_AUDIT_PAGE)
            ids = [int(doc["_id"]) async for doc in cursor]
            if not ids:
                break
            for user_id in ids:
                seen.add(user_id)
                await self._audit_into(report, user_id, repair=repair)
            last = ids[-1]
        async for user_id in self.user_ids_with_entries():
            if user_id not in seen:
                await self._audit_into(report, user_id, repair=repair)
        return report

    async def _audit_into(self, report: AuditReport, user_id: int, *, repair: bool) -> None:
        check = await self.audit_user(user_id, repair=repair)
        if check is None:
            report.unsettled.append(user_id)
            return
        report.checked += int(check.exists)
        if check.pending:
            report.pending.append(user_id)
        if check.mismatch is not None:
            report.mismatches.append(check.mismatch)

    async def audit_user(self, user_id: int, *, repair: bool = True) -> UserCheck | None:
        """One user's balance against the sum of their applied entries, consistently.

        Reads ``(balance_cents, ledger_seq)`` in one document read, sums the entries with
        ``seq <= ledger_seq`` (written before that position was applied, never changed
        after), then re-reads the user: if ``ledger_seq`` moved meanwhile the check is
        made again, at most ``_AUDIT_ATTEMPTS`` times; None when it never held still.
        """
        for _ in range(_AUDIT_ATTEMPTS):
            if repair:
                with contextlib.suppress(UnknownUser):  # no account: checked below
                    await self._settle(user_id)
            projection = {"balance_cents": 1, "ledger_seq": 1}
            before = await self.users.find_one({"_id": user_id}, projection)
            if before is None:
                # Entries of an account that does not exist: all of them are a mismatch.
                total, count = await self._entries_sum(user_id, None)
                if await self.users.find_one({"_id": user_id}, {"_id": 1}) is not None:
                    continue  # created meanwhile: check it as an account
                mismatch = Mismatch(user_id, 0, total) if count else None
                return UserCheck(exists=False, mismatch=mismatch, pending=False)
            seq = int(before.get("ledger_seq") or 0)
            total, _ = await self._entries_sum(user_id, seq)
            pending = await self.col.find_one({"user_id": user_id, "seq": seq + 1}, {"_id": 1})
            after = await self.users.find_one({"_id": user_id}, projection)
            if after is None or int(after.get("ledger_seq") or 0) != seq:
                continue  # an effect was applied meanwhile: check again
            balance = int(before.get("balance_cents") or 0)
            mismatch = Mismatch(user_id, balance, total) if balance != total else None
            return UserCheck(exists=True, mismatch=mismatch, pending=pending is not None)
        return None

    async def _entries_sum(self, user_id: int, max_seq: int | None) -> tuple[int, int]:
        match: Document = {"user_id": user_id}
        if max_seq is not None:
            match["seq"] = {"$lte": max_seq}
        rows = await aggregate(
            self.col,
            [
                {"$match": match},
                {"$group": {"_id": None, "total": {"$sum": "$amount_cents"}, "n": {"$sum": 1}}},
            ],
        )
        if not rows:
            return 0, 0
        return int(rows[0]["total"]), int(rows[0]["n"])
