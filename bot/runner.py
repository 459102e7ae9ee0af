"""Start and stop the application the way ``run_polling`` does, but under our control.

The CLI, the demo and the end-to-end tests share this, so they all run the production
lifecycle: initialize → post_init → start polling → start … stop → shutdown → post_shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress

from telegram import Update
from telegram.error import Conflict, TelegramError

from bot.application import BotApplication

_LOGGER = logging.getLogger(__name__)


def _polling_error(error: TelegramError) -> None:
    if isinstance(error, Conflict):
        _LOGGER.error(
            "INCIDENT: Telegram answered 409 Conflict: another process is polling this bot "
            "token (or a webhook is set). Only one instance may poll: stop the other one."
        )
    else:
        _LOGGER.warning("polling failed, retrying with backoff: %s", error)


async def start_application(application: BotApplication, *, poll_timeout: int = 30) -> None:
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    assert application.updater is not None
    await application.updater.start_polling(
        timeout=poll_timeout,
        allowed_updates=Update.ALL_TYPES,
        error_callback=_polling_error,
    )
    await application.start()


async def stop_application(application: BotApplication) -> None:
    """Stops polling, lets running updates finish, flushes persistence, closes storage."""
    if application.updater is not None and application.updater.running:
        await application.updater.stop()
    if application.running:
        await application.stop()
    await application.shutdown()
    if application.post_shutdown is not None:
        await application.post_shutdown(application)


async def run_until_signalled(application: BotApplication, *, poll_timeout: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await start_application(application, poll_timeout=poll_timeout)
    _LOGGER.info("bot is running")
    try:
        await stop.wait()
    finally:
        _LOGGER.info("stopping: finishing running updates and flushing sessions")
        await stop_application(application)
