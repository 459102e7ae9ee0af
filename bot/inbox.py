"""Durable hand-over of fetched updates (see ``storage/inbox.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from telegram import Update
from telegram.error import NetworkError

from services.clock import Clock, utc_now
from storage.inbox import InboxRepo

_LOGGER = logging.getLogger(__name__)


class Inbox:
    """Stores each fetched batch before PTB queues it; forgets updates once handled."""

    def __init__(self, repo: InboxRepo, *, clock: Clock = utc_now, flush_seconds: float = 1.0):
        self._repo = repo
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
        try:
            await self._repo.save(result, now=self._clock())
        except Exception as exc:
            # Not stored → not handed to PTB: it asks again, nothing is confirmed or lost.
            raise NetworkError("could not store fetched updates") from exc

    def done(self, update: object) -> None:
        if isinstance(update, Update):
            self._done.append(update.update_id)

    async def flush(self) -> None:
        done, self._done = self._done, []
        if done:
            await self._repo.delete(done)

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
        await self.flush()

    async def replay(self, application: Any) -> int:
        """Queues updates a previous worker fetched but did not handle (oldest first)."""
        pending = await self._repo.pending()
        for doc in pending:
            await application.update_queue.put(Update.de_json(doc["update"], application.bot))
        if pending:
            _LOGGER.info("replaying %d updates fetched by a previous worker", len(pending))
        return len(pending)
