"""Runs the production application against the offline sandbox, in this process.

Used by ``python -m bot demo``, the end-to-end tests and the benchmarks: the same
``build_application`` as production, real HTTP to the Bot API emulator, and an in-memory
(or real, when given) MongoDB that survives ``restart()`` like a real database would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from telegram import Update

from bot.application import BotApplication, build_application, build_storage
from bot.i18n import I18n
from bot.runner import start_application, stop_application
from bot.settings import Settings
from bot.update_processor import PerChatUpdateProcessor
from sandbox.telegram import BotApiEmulator, SentMessage
from services.clock import Clock, utc_now
from storage.client import Mongo

SANDBOX_TOKEN = "123456:SANDBOX-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  # noqa: S105 - fake


class BotHarness:
    def __init__(
        self,
        settings: Settings,
        *,
        mongo: Mongo | None = None,
        clock: Clock = utc_now,
        emulator: BotApiEmulator | None = None,
        rate_limits: bool = True,
        poll_timeout: int = 5,
    ) -> None:
        self.emulator = emulator or BotApiEmulator(SANDBOX_TOKEN, rate_limits=rate_limits)
        self._own_emulator = emulator is None
        self._emulator_started = emulator is not None
        self.settings = settings
        self.clock = clock
        self.poll_timeout = poll_timeout
        self.i18n = I18n.load(settings.i18n.languages, settings.i18n.default_language)
        if mongo is None:
            mongo = Mongo.memory(settings.mongo.database)
        self.mongo = mongo
        self.app: BotApplication | None = None
        self._done: set[int] = set()
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}

    @property
    def application(self) -> BotApplication:
        if self.app is None:
            raise RuntimeError("the harness is not started")
        return self.app

    async def start(self) -> None:
        if not self._emulator_started:
            await self.emulator.start()
            self._emulator_started = True
        tg = self.settings.telegram.model_copy(
            update={
                "base_url": self.emulator.base_url,
                "base_file_url": self.emulator.base_file_url,
            }
        )
        settings = self.settings.model_copy(update={"telegram": tg})
        storage = build_storage(settings, "mongomock://", client=self.mongo)
        self.app = build_application(
            settings, storage, token=self.emulator.token, clock=self.clock, i18n=self.i18n
        )
        processor = self.app.update_processor
        assert isinstance(processor, PerChatUpdateProcessor)
        processor.done_listeners.append(self._on_done)
        await start_application(self.app, poll_timeout=self.poll_timeout)

    async def stop(self) -> None:
        if self.app is not None:
            await stop_application(self.app)
            self.app = None

    async def close(self) -> None:
        await self.stop()
        if self._own_emulator and self._emulator_started:
            await self.emulator.stop()
            self._emulator_started = False

    async def crash(self) -> None:
        """Simulates ``kill -9`` of the worker: every task of the application is cancelled
        wherever it stands, nothing is flushed, nothing is released or closed gracefully.
        MongoDB (the shared in-memory database) and the Bot API emulator survive, as they
        would outside a killed process. Uses PTB's private task handles: test-only."""
        app, self.app = self.app, None
        if app is None:
            return
        tasks: list[asyncio.Task[Any]] = []
        extras = app.bot_data.extras
        for key in ("polling_controller", "poller_lease"):
            owner = extras.get(key)
            task = getattr(owner, "_task", None)
            if isinstance(task, asyncio.Task):
                tasks.append(task)
        updater = app.updater
        if updater is not None:
            polling = getattr(updater, "_Updater__polling_task", None)
            if isinstance(polling, asyncio.Task):
                tasks.append(polling)
        for name in ("_Application__update_fetcher_task", "_Application__update_persistence_task"):
            task = getattr(app, name, None)
            if isinstance(task, asyncio.Task):
                tasks.append(task)
        tasks.extend(getattr(app, "_Application__create_task_tasks", set()))
        # The inbox's cleanup loop dies with the process too (it would otherwise go on
        # deleting entries for the dead worker).
        inbox_task = getattr(extras.get("inbox"), "_task", None)
        if isinstance(inbox_task, asyncio.Task):
            tasks.append(inbox_task)
        if app.job_queue is not None and app.job_queue.scheduler.running:
            app.job_queue.scheduler.shutdown(wait=False)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        web = extras.get("web")
        if web is not None:
            await web.stop()  # a dead process frees its port

    async def flush(self) -> None:
        """Writes changed conversation positions now instead of at the next interval."""
        await self.application.update_persistence()

    async def restart(self) -> None:
        """Stops the application and builds a new one on the same database."""
        await self.stop()
        await self.start()

    def _on_done(self, update: object) -> None:
        if isinstance(update, Update):
            self._done.add(update.update_id)
            for waiter in self._waiters.pop(update.update_id, []):
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_done(self, update_id: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Waits until the application has finished handling ``update_id``."""
        if update_id in self._done:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(update_id, []).append(waiter)
        await asyncio.wait_for(waiter, timeout)

    async def _exchange(
        self, user_id: int, inject: Callable[[], int], timeout: float = 10.0  # noqa: ASYNC109
    ) -> list[SentMessage]:
        mark = self.emulator.cursor(user_id)
        update_id = inject()
        await self.wait_done(update_id, timeout)
        return self.emulator.sent_messages(user_id, since=mark)

    async def say(
        self, user_id: int, text: str, *, timeout: float = 10.0  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """The user sends ``text``; returns the bot's new messages once it is handled."""
        return await self._exchange(
            user_id, lambda: self.emulator.send_message(user_id, text), timeout
        )

    async def send_document(
        self,
        user_id: int,
        data: bytes,
        filename: str,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """The user sends a file as a document; returns the bot's new messages."""
        return await self._exchange(
            user_id, lambda: self.emulator.send_document(user_id, data, filename), timeout
        )

    async def edit(
        self,
        user_id: int,
        message_id: int,
        text: str,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """The user edits their message ``message_id`` to ``text`` (an ``edited_message``)."""
        return await self._exchange(
            user_id, lambda: self.emulator.edit_message(user_id, message_id, text), timeout
        )

    async def press(
        self,
        user_id: int,
        message: SentMessage,
        label: str | None = None,
        *,
        data: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """Presses the button whose text contains ``label`` (or with ``data``) on ``message``."""
        payload = data if data is not None else message.callback_data_for(label or "")

        def inject() -> int:
            self.emulator.press_button(user_id, message.message_id, payload)
            return self._last_update_id()

        return await self._exchange(user_id, inject, timeout)

    def _last_update_id(self) -> int:
        return self.emulator.last_update_id

    def add_user(self, user_id: int, **kwargs: Any) -> None:
        self.emulator.add_user(user_id, **kwargs)

    def last_message(self, user_id: int) -> SentMessage:
        messages = self.emulator.sent_messages(user_id)
        if not messages:
            raise LookupError(f"no bot message in chat {user_id}")
        return messages[-1]
