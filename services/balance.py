"""The customer's balance and its history (read side of the ledger)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.ledger import LedgerEntry, LedgerRepo
from storage.users import UsersRepo

PAGE_SIZE = 10


@dataclass(frozen=True)
class HistoryPage:
    entries: list[LedgerEntry]
    page: int
    pages: int


class BalanceService:
    def __init__(self, users: UsersRepo, ledger: LedgerRepo) -> None:
        self._users = users
        self._ledger = ledger

    async def balance_cents(self, user_id: int) -> int:
        user = await self._users.get(user_id)
        return int(user.get("balance_cents", 0)) if user else 0

    async def history(self, user_id: int, page: int) -> HistoryPage:
        page = max(page, 1)
        entries, total = await self._ledger.history(
            user_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        pages = max(1, -(-total // PAGE_SIZE))
        if page > pages:
            return await self.history(user_id, pages)
        return HistoryPage(entries=entries, page=page, pages=pages)
