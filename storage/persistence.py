"""``MongoPersistence``: PTB persistence for conversation positions only.

Business data never lives in ``user_data``/``chat_data`` (drafts are written through
repositories at every step), so only conversations are persisted. PTB flushes changed
positions every ``update_interval`` seconds (kept at <= 2 s, not PTB's 60 s default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from telegram.ext import BasePersistence, PersistenceInput
from telegram.ext._utils.types import CDCData, ConversationDict, ConversationKey

from storage.sessions import SessionsRepo

Clock = Callable[[], datetime]

# How long one read of every conversation's positions answers the following asks.
SNAPSHOT_SECONDS = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class MongoPersistence(BasePersistence[dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    def __init__(
        self,
        sessions: Callable[[], Awaitable[SessionsRepo]],
        *,
        update_interval: float = 1.0,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            store_data=PersistenceInput(
                bot_data=False, chat_data=False, user_data=False, callback_data=False
            ),
            update_interval=update_interval,
        )
        # A factory, because PTB loads persistence before ``post_init`` runs: the first
        # read connects the storage inside the running loop.
        self._sessions = sessions
        self._clock = clock
        self._monotonic = monotonic
        self._snapshot: dict[str, dict[ConversationKey, str]] = {}
        self._snapshot_at = -math.inf
        self._served: set[str] = set()

    async def get_conversations(self, name: str) -> ConversationDict:
        """PTB asks once per conversation handler, one after the other (at start-up and on
        takeover): the first ask reads every conversation's positions in one pass and the
        others are answered from that read. A name asked again, or a read older than
        ``SNAPSHOT_SECONDS``, starts a new read."""
        fresh = self._monotonic() - self._snapshot_at < SNAPSHOT_SECONDS
        if not fresh or name in self._served:
            repo = await self._sessions()
            self._snapshot = await repo.load_all_states(now=self._clock())
            self._snapshot_at = self._monotonic()
            self._served = set()
        self._served.add(name)
        return dict(self._snapshot.get(name, {}))

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        repo = await self._sessions()
        await repo.set_state(
            name, key, None if new_state is None else str(new_state), now=self._clock()
        )

    async def get_user_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def get_bot_data(self) -> dict[Any, Any]:
        return {}

    async def get_callback_data(self) -> CDCData | None:
        return None

    async def update_user_data(self, user_id: int, data: dict[Any, Any]) -> None:
        return None

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        return None

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        return None

    async def update_callback_data(self, data: CDCData) -> None:
        return None

    async def drop_chat_data(self, chat_id: int) -> None:
        return None

    async def drop_user_data(self, user_id: int) -> None:
        return None

    async def refresh_user_data(self, user_id: int, user_data: dict[Any, Any]) -> None:
        return None

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        return None

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        return None

    async def flush(self) -> None:
        # Every write goes straight to MongoDB; nothing is buffered here.
        return None
