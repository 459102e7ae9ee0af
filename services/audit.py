"""Audit trail of admin actions."""

from __future__ import annotations

from typing import Any

from services.clock import Clock, utc_now
from storage.audit import AuditRepo
from storage.client import Document


class AuditService:
    def __init__(self, repo: AuditRepo, *, clock: Clock = utc_now) -> None:
        self._repo = repo
        self._clock = clock

    async def record(
        self,
        actor: int,
        action: str,
        target: str,
        *,
        before: Any = None,
        after: Any = None,
        key: str | None = None,
    ) -> bool:
        """Records an admin action; the same ``key`` is recorded once (replays, retries)."""
        return await self._repo.record(
            actor=actor, action=action, target=target, before=before, after=after,
            at=self._clock(), key=key,
        )

    async def latest(self, limit: int = 20) -> list[Document]:
        return await self._repo.latest(limit)
