"""Durable hand-over of fetched updates (see ``storage/inbox.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import timedelta
from typing import Any

from telegram import Update
from telegram.error import NetworkError

from services.clock import Clock, utc_now
from storage.inbox import InboxRepo

_LOGGER = logging.getLogger(__name__)


class Inbox:
    """Stores each fetched batch before PTB queues it; forgets updates once handled."""

    def __init__(
        self,
        repo: InboxRepo,
        *,
        retention: timedelta,
        clock: Clock = utc_now,
        flush_seconds: float = 1.0,
    ):
        """``retention``: the ``processed_updates`` retention. An entry is replayed only
        while the claim of its update id would still be there to stop a second handling."""
        self._repo = repo
        self._retention = retention
        self._clock = clock
        self._flush_seconds = flush_seconds
        self._done: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def store_batch(self, payload: bytes) -> None:
        """Called with a successful getUpdates answer, before PTB sees it."""
        try:
            data = json.loads(payload)
        except ValueError:
            return
        result = data.get("result") if isinstance(data, dict) else None
        if not data.get("ok") or not isinstance(result, list) or not result:
            return
        now = self._clock()
        try:
            await self._repo.save(result, now=now, expires_at=now + self._retention)
        except Exception as exc:
            # Not stored → not handed to PTB: it asks again, nothing is confirmed or lost.
            raise NetworkError("could not store fetched updates") from exc

    def done(self, update: object) -> None:
        if isinstance(update, Update):
            self._done.append(update.update_id)

    async def flush(self) -> None:
        """Deletes the handled entries; ids whose delete failed are kept for the next try
        (forgotten, they would be replayed, and re-handled once their claim expired)."""
        done, self._done = self._done, []
        if not done:
            return
        try:
            await self._repo.delete(done)
        except BaseException:
            self._done[:0] = done
            raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except Exception:
                _LOGGER.warning("inbox cleanup failed; retrying", exc_info=True)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="inbox-cleanup")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception:
            # Shutdown goes on; the entries are replayed and skipped by their claims.
            _LOGGER.warning("inbox cleanup failed at shutdown", exc_info=True)

    async def replay(self, application: Any) -> int:
        """Queues updates a previous worker fetched but did not handle (oldest first).

        Entries older than the retention are skipped and deleted: the claim that would
        stop a second handling may be gone (the inbox TTL monitor may not have run yet)."""
        oldest = self._clock() - self._retention
        stale = await self._repo.purge(received_before=oldest)
        if stale:
            _LOGGER.warning("skipped %d inbox entries older than the retention", stale)
        pending = await self._repo.pending(received_after=oldest)
        for doc in pending:
            await application.update_queue.put(Update.de_json(doc["update"], application.bot))
        if pending:
            _LOGGER.info("replaying %d updates fetched by a previous worker", len(pending))
        return len(pending)
