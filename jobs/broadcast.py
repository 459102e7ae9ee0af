"""Delivers broadcasts: the job starts one runner task per process when there is work.

The runner (``BroadcastService.run``) is a task of the application (``create_task``), so it
is not bound by the job's interval, and ``Application.stop`` waits for it: it notices the
stop, lets in-flight sends finish and returns unsent claims to the queue. The next start
resumes from MongoDB. Telegram's answers are mapped to ``SendResult`` here.
"""

from __future__ import annotations

import asyncio
import logging
import time

from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot.context import BotContext
from bot.lease import holds_lease
from bot.telegram_errors import NOT_MODIFIED, is_bad_request
from services.broadcast import Outgoing, Progress, SendOutcome, SendResult

_LOGGER = logging.getLogger(__name__)

RUNNER_KEY = "broadcast_runner"
# A progress edit right after another one waits this long (one chat: about 1 message/s).
_MIN_EDIT_GAP = 1.1


async def deliver_broadcasts_job(context: BotContext) -> None:
    """Starts the delivery runner when a broadcast is waiting and none runs here."""
    application = context.application
    runner = context.bot_data.extras.get(RUNNER_KEY)
    if isinstance(runner, asyncio.Task) and not runner.done():
        return
    if not application.running or not await context.services.broadcasts.has_work():
        return
    context.bot_data.extras[RUNNER_KEY] = application.create_task(
        _run(context), name="broadcast:runner"
    )


async def _run(context: BotContext) -> None:
    application = context.application
    bot = context.bot
    i18n = context.i18n
    last_edit: dict[str, float] = {}

    async def send(message: Outgoing) -> SendResult:
        try:
            if message.photo_file_id:
                await bot.send_photo(
                    message.user_id, message.photo_file_id, caption=message.text or None
                )
            else:
                await bot.send_message(message.user_id, message.text)
        except RetryAfter as exc:
            retry_after = exc.retry_after
            seconds = retry_after if isinstance(retry_after, int) else retry_after.total_seconds()
            return SendResult(SendOutcome.RETRY, retry_after=float(seconds))
        except Forbidden as exc:
            return SendResult(SendOutcome.BLOCKED, error=exc.message)
        except BadRequest as exc:
            return SendResult(SendOutcome.FAILED, error=exc.message)
        except TelegramError as exc:
            # Timeouts and network errors: maybe delivered, so never sent again.
            return SendResult(SendOutcome.FAILED, error=f"{type(exc).__name__}: {exc.message}")
        return SendResult(SendOutcome.SENT)

    async def on_progress(progress: Progress) -> None:
        broadcast = progress.broadcast
        chat_id = broadcast.get("progress_chat_id")
        message_id = broadcast.get("progress_message_id")
        if progress.done:
            _LOGGER.info("broadcast %s finished: %s", broadcast["_id"], progress.counts)
        if not chat_id or not message_id:
            return
        lang = str(broadcast.get("admin_language") or i18n.default)
        counts = progress.counts
        fields = {
            "broadcast_id": str(broadcast["_id"])[-6:],
            "sent": counts["sent"],
            "failed": counts["failed"],
            "skipped": counts["skipped"],
            "total": progress.total,
        }
        if progress.done:
            text = i18n.t(lang, "admin.broadcast.done", **fields)
        else:
            left = int(progress.seconds_left or 0)
            text = i18n.t(
                lang,
                "admin.broadcast.progress",
                **fields,
                rate=f"{progress.rate:.1f}",
                left=f"{left // 60}:{left % 60:02d}",
            )
        key = str(broadcast["_id"])
        wait = last_edit.get(key, 0.0) + _MIN_EDIT_GAP - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        last_edit[key] = time.monotonic()
        try:
            await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
        except BadRequest as exc:
            if not is_bad_request(exc, NOT_MODIFIED):
                raise

    def should_stop() -> bool:
        # Stop on shutdown, and at once when this instance loses the poller lease.
        return not application.running or not holds_lease(context.bot_data)

    await context.services.broadcasts.run(send, should_stop=should_stop, on_progress=on_progress)
