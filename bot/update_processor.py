"""Concurrent across chats, strictly in order within one chat."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.metrics import HANDLER_LATENCY, UPDATES_RECEIVED

_TYPES = ("message", "callback_query", "pre_checkout_query", "edited_message")


def update_type(update: object) -> str:
    if isinstance(update, Update):
        for name in _TYPES:
            if getattr(update, name) is not None:
                return name
        return "other"
    return type(update).__name__


class _ChatLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Serialises updates of one chat with a lock that is freed when the chat is idle.

    Updates are fetched in order and each becomes a task in that order; ``asyncio.Lock``
    wakes waiters first-in first-out, so one chat's updates run in arrival order while
    other chats proceed concurrently. A lock lives only while an update of its chat is
    queued or running, so memory does not grow with the number of users.
    """

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int | str, _ChatLock] = {}
        # Called with each update once it is fully processed (tests and the demo wait on it).
        self.done_listeners: list[Callable[[object], None]] = []

    @staticmethod
    def key_of(update: object) -> int | str | None:
        if not isinstance(update, Update):
            return None
        if update.effective_chat is not None:
            return update.effective_chat.id
        if update.effective_user is not None:
            return f"user:{update.effective_user.id}"
        return None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        kind = update_type(update)
        UPDATES_RECEIVED.labels(type=kind).inc()
        started = time.perf_counter()
        try:
            await self._serialised(update, coroutine)
        finally:
            HANDLER_LATENCY.labels(handler=kind).observe(time.perf_counter() - started)
            for listener in self.done_listeners:
                listener(update)

    async def _serialised(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = self.key_of(update)
        if key is None:
            await coroutine
            return
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _ChatLock()
        entry.users += 1
        try:
            async with entry.lock:
                await coroutine
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    @property
    def active_chats(self) -> int:
        return len(self._locks)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
