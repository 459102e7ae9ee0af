"""Concurrent across chats, strictly in order within one chat, and fair between chats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.metrics import HANDLER_LATENCY, UPDATES_RECEIVED, UPDATES_SKIPPED

_LOGGER = logging.getLogger(__name__)

_TYPES = ("message", "callback_query", "pre_checkout_query", "edited_message")

Listener = Callable[[object], None]


def update_type(update: object) -> str:
    if isinstance(update, Update):
        for name in _TYPES:
            if getattr(update, name) is not None:
                return name
        return "other"
    return type(update).__name__


def is_payment(update: object) -> bool:
    """A pre-checkout query (answer within 10 s) or a successful payment (credit at once)."""
    if not isinstance(update, Update):
        return False
    if update.pre_checkout_query is not None:
        return True
    return update.message is not None and update.message.successful_payment is not None


class _ChatLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Serialises updates of one chat with a lock that is freed when the chat is idle.

    Updates are fetched in order and each becomes a task in that order; ``asyncio.Lock``
    wakes waiters first-in first-out, so one chat's updates run in arrival order while
    other chats proceed concurrently. An update waits for its chat's turn *before* it
    takes one of the ``max_concurrent_updates`` slots, so a chat holds at most one slot
    however many updates it has queued, and one busy chat cannot starve the others. A
    chat may have at most ``max_queued_per_chat`` updates queued or running; the excess
    is dropped (``drop_listeners`` send the flood notice) and counts as done. A lock lives
    only while an update of its chat is queued or running, so memory does not grow with
    the number of users.

    Payments (pre-checkout queries, successful payments) are never dropped and never
    wait: they run in their own lane per user, without a slot. Telegram creates them only
    when a user pays, so they cannot be flooded.
    """

    def __init__(self, max_concurrent_updates: int, *, max_queued_per_chat: int = 20) -> None:
        super().__init__(max_concurrent_updates)
        if max_queued_per_chat < 1:
            raise ValueError("max_queued_per_chat must be a positive integer")
        self.max_queued_per_chat = max_queued_per_chat
        self._locks: dict[int | str, _ChatLock] = {}
        self._in_flight = 0
        # Called with each update once it is fully processed or dropped (the inbox forgets
        # it; tests and the demo wait on it).
        self.done_listeners: list[Listener] = []
        # Called with each update the per-chat cap dropped (the flood notice).
        self.drop_listeners: list[Listener] = []

    @staticmethod
    def key_of(update: object) -> int | str | None:
        if not isinstance(update, Update):
            return None
        if is_payment(update):
            user = update.effective_user
            return f"payment:{user.id}" if user is not None else None
        if update.effective_chat is not None:
            return update.effective_chat.id
        if update.effective_user is not None:
            return f"user:{update.effective_user.id}"
        return None

    # PTB marks ``process_update`` final; it takes a slot, then calls ``do_process_update``.
    # Taking the slot only once the chat's turn has come is the point of this class.
    async def process_update(  # type: ignore[misc]
        self, update: object, coroutine: Awaitable[Any]
    ) -> None:
        key = self.key_of(update)
        payment = is_payment(update)
        entry = self._locks.get(key) if key is not None else None
        if entry is not None and entry.users >= self.max_queued_per_chat and not payment:
            self._drop(update, coroutine)
            return
        self._in_flight += 1
        try:
            if key is None:
                async with self._semaphore:
                    await self.do_process_update(update, coroutine)
                return
            if entry is None:
                entry = self._locks[key] = _ChatLock()
            entry.users += 1
            try:
                async with entry.lock:
                    if payment:
                        await self.do_process_update(update, coroutine)
                    else:
                        async with self._semaphore:
                            await self.do_process_update(update, coroutine)
            finally:
                entry.users -= 1
                if entry.users == 0:
                    del self._locks[key]
        finally:
            self._in_flight -= 1

    def _drop(self, update: object, coroutine: Awaitable[Any]) -> None:
        if isinstance(coroutine, Coroutine):
            coroutine.close()  # never started: nothing to undo, no "never awaited" warning
        UPDATES_SKIPPED.labels(reason="chat_queue_full").inc()
        _LOGGER.info("chat queue full: update dropped")
        for listeners in (self.drop_listeners, self.done_listeners):
            for listener in listeners:
                try:
                    listener(update)
                except Exception:
                    _LOGGER.exception("update listener failed")

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        kind = update_type(update)
        UPDATES_RECEIVED.labels(type=kind).inc()
        started = time.perf_counter()
        cancelled = False
        try:
            await coroutine
        except asyncio.CancelledError:
            # Not handled (the worker is going away): not done, so the inbox keeps it and
            # the next worker replays it.
            cancelled = True
            raise
        finally:
            HANDLER_LATENCY.labels(handler=kind).observe(time.perf_counter() - started)
            if not cancelled:
                for listener in self.done_listeners:
                    listener(update)

    @property
    def active_chats(self) -> int:
        return len(self._locks)

    @property
    def in_flight(self) -> int:
        """Updates handed to the processor and not finished: running or waiting their turn."""
        return self._in_flight

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
