"""Session bookkeeping: exactly-once update handling and session expiry."""

from __future__ import annotations

from datetime import timedelta

from services.clock import Clock, utc_now
from storage.inbox import InboxRepo
from storage.processed_updates import ProcessedUpdatesRepo
from storage.sessions import ConversationKey, ExpiredSession, SessionsRepo


class SessionService:
    def __init__(
        self,
        sessions: SessionsRepo,
        processed: ProcessedUpdatesRepo,
        inbox: InboxRepo | None = None,
        *,
        processed_ttl: timedelta,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._processed = processed
        self._inbox = inbox
        self._processed_ttl = processed_ttl
        self._clock = clock

    async def claim_update(self, update_id: int) -> bool:
        """True the first time an update is seen; False when Telegram re-delivers it."""
        now = self._clock()
        return await self._processed.claim(
            update_id, now=now, expires_at=now + self._processed_ttl
        )

    async def touch(self, key: ConversationKey) -> ExpiredSession | None:
        return await self._sessions.touch(key, now=self._clock())

    async def claim_expired(self, limit: int = 100) -> list[ExpiredSession]:
        return await self._sessions.claim_expired(now=self._clock(), limit=limit)

    async def get_data(self, key: ConversationKey, conversation: str) -> dict[str, object]:
        return await self._sessions.get_data(key, conversation)

    async def set_data(
        self, key: ConversationKey, conversation: str, data: dict[str, object]
    ) -> None:
        await self._sessions.set_data(key, conversation, data, now=self._clock())

    async def purge_expired(self, *, grace: timedelta) -> int:
        """Does the TTL monitor's work for the in-memory database (mongomock has none)."""
        now = self._clock()
        removed = await self._processed.purge(before=now)
        if self._inbox is not None:
            removed += await self._inbox.purge(received_before=now - self._processed_ttl)
        removed += await self._sessions.purge(before=now - grace)
        return removed
