"""Notifications through the persistent outbox: admin alerts and user notices.

Nothing here talks to Telegram. Messages are queued in MongoDB and a job delivers them
with retries, so a Telegram outage delays notifications but never drops them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.clock import Clock, utc_now
from storage.outbox import OutboxMessage, OutboxRepo

_LOGGER = logging.getLogger(__name__)


class DeliveryError(Exception):
    """Raised by a sender; ``permanent`` stops retries, ``retry_after`` delays the next."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after: float = 0) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.retry_after = retry_after


Sender = Callable[[OutboxMessage], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    retried: int
    failed: int


class Notifier:
    def __init__(
        self,
        outbox: OutboxRepo,
        *,
        admin_ids: Sequence[int],
        dedup_window: timedelta,
        clock: Clock = utc_now,
    ) -> None:
        self._outbox = outbox
        self._admin_ids = tuple(admin_ids)
        self._dedup_window = dedup_window
        self._clock = clock

    def _bucket(self, now: datetime) -> int:
        window = max(self._dedup_window.total_seconds(), 1)
        return int(now.timestamp() // window)

    async def alert_admins(
        self,
        text: str,
        *,
        dedup_key: str | None = None,
        windowed: bool = False,
        reply_markup: dict[str, Any] | None = None,
    ) -> int:
        """Queues one alert per admin; the same ``dedup_key`` is queued once (per window)."""
        now = self._clock()
        queued = 0
        for admin_id in self._admin_ids:
            key = None
            if dedup_key is not None:
                suffix = f":{self._bucket(now)}" if windowed else ""
                key = f"alert:{dedup_key}{suffix}:{admin_id}"
            if await self._outbox.enqueue(
                chat_id=admin_id,
                text=text,
                kind="admin_alert",
                dedup_key=key,
                now=now,
                reply_markup=reply_markup,
            ):
                queued += 1
        return queued

    async def notify_user(
        self,
        user_id: int,
        text: str,
        *,
        dedup_key: str | None,
        reply_markup: dict[str, Any] | None = None,
    ) -> bool:
        return await self._outbox.enqueue(
            chat_id=user_id,
            text=text,
            kind="user_notice",
            dedup_key=None if dedup_key is None else f"notice:{dedup_key}",
            now=self._clock(),
            reply_markup=reply_markup,
        )


    async def disarm_message(
        self, chat_id: int, message_id: int, status: str, *, dedup_key: str
    ) -> bool:
        """Queues the disarm of a superseded message: its keyboard goes, ``status`` (when
        not empty) becomes its text. Once per ``dedup_key``."""
        return await self._outbox.enqueue(
            chat_id=chat_id,
            text=status,
            kind="disarm",
            dedup_key=f"disarm:{dedup_key}",
            now=self._clock(),
            edit_message_id=message_id,
        )


class OutboxDelivery:
    def __init__(
        self,
        outbox: OutboxRepo,
        *,
        max_attempts: int,
        batch_size: int,
        clock: Clock = utc_now,
    ) -> None:
        self._outbox = outbox
        self._max_attempts = max_attempts
        self._batch_size = batch_size
        self._clock = clock

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 3600))

    async def deliver_due(
        self, send: Sender, *, should_stop: Callable[[], bool] = lambda: False
    ) -> DeliveryReport:
        """Sends up to ``batch_size`` due messages, claiming each right before its send.

        ``should_stop`` is asked before every claim: a standby, or a leader that lost the
        poller lease, claims nothing more (and leaves nothing claimed behind).
        """
        delivered = retried = failed = 0
        for _ in range(self._batch_size):
            if should_stop():
                break
            message = await self._outbox.claim_next(now=self._clock())
            if message is None:
                break
            try:
                await send(message)
            except DeliveryError as exc:
                now = self._clock()
                if exc.permanent or message.attempts >= self._max_attempts:
                    await self._outbox.mark_failed(message, now=now, error=str(exc))
                    _LOGGER.warning(
                        "outbox message dropped: id=%s kind=%s attempts=%d reason=%s",
                        message.id, message.kind, message.attempts, exc,
                    )
                    failed += 1
                else:
                    delay = max(self.backoff(message.attempts).total_seconds(), exc.retry_after)
                    await self._outbox.mark_retry(
                        message, at=now + timedelta(seconds=delay), error=str(exc)
                    )
                    retried += 1
                continue
            await self._outbox.mark_delivered(message, now=self._clock())
            delivered += 1
        return DeliveryReport(delivered=delivered, retried=retried, failed=failed)

    async def stats(self) -> tuple[int, float]:
        """Depth of the undelivered queue and the age in seconds of its oldest message."""
        return await self._outbox.pending_stats(now=self._clock())
