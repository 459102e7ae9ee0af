"""N customers each run a complete label order concurrently, against one worker process.

This process plays Telegram and the carrier: it runs the Bot API emulator, the fake
ShipStation (answering instantly) and the customers. The worker is a separate process
(``python -m bench.worker``: the production application, in-memory MongoDB unless
``MONGO_URL`` is set), so its figures are its own and not shared with the stand-ins.

Each customer sends ``/start``, ``/order``, the sender and recipient addresses, the weight,
the size, picks the first rate and presses Pay (8 updates), then must receive the label
PDF. Latency is measured per update, from the moment the customer's update is handed to
the emulator (so it is waiting for the worker's ``getUpdates``) to the moment the worker's
last reply to it reaches the emulator. How many replies (messages sent or edited) each
step produces is learnt first from one warm-up customer, who waits after every step for
a first reply and then for the bot to go quiet.

``think`` is the mean pause of a customer between receiving a reply and sending the next
update (uniform between 0 and twice the mean): 0 is the saturation test (everyone sends as
soon as answered: throughput at full load, latency is then mostly queueing); a few
seconds is closer to people, and shows the latency at that offered load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.common import RECIPIENT, Table
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import BotApiEmulator, SentMessage

TOKEN = "424242:BENCH-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  # noqa: S105 - the emulator's fake token
FIRST_USER = 20_000_000
STEP_TIMEOUT = 600.0  # measure latency under overload instead of failing steps
QUIET = 1.0  # the warm-up customer's step is over when the bot is quiet this long
_MARKER = re.compile(r"Customer ([A-Z][a-z]+)")


def marker(uid: int) -> str:
    """A per-customer name (letters only, as the address parser wants)."""
    return "".join(chr(ord("a") + int(d)) for d in str(uid)).title()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


@dataclass
class _Chats:
    """Counts the bot's messages sent or edited per chat and wakes the one waiting chat."""

    effects: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    waiters: dict[int, tuple[int, asyncio.Future[None]]] = field(default_factory=dict)
    last_change: float = 0.0

    def changed(self, chat_id: int) -> None:
        self.effects[chat_id] += 1
        self.last_change = time.perf_counter()
        waiter = self.waiters.get(chat_id)
        if waiter is not None and self.effects[chat_id] >= waiter[0] and not waiter[1].done():
            waiter[1].set_result(None)

    async def wait(self, chat_id: int, target: int, timeout: float) -> None:  # noqa: ASYNC109
        if self.effects[chat_id] >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[chat_id] = (target, future)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self.waiters.pop(chat_id, None)

    async def quiet(self, seconds: float) -> None:
        """Returns once no chat changed for ``seconds``."""
        while True:
            left = self.last_change + seconds - time.perf_counter()
            if left <= 0:
                return
            await asyncio.sleep(left)


Inject = Callable[[], object]


class _Customer:
    def __init__(
        self,
        uid: int,
        emulator: BotApiEmulator,
        chats: _Chats,
        expected: list[int] | None,
    ) -> None:
        self.uid = uid
        self.emulator = emulator
        self.chats = chats
        self.expected = expected  # None: learn it (the warm-up customer)
        self.learnt: list[int] = []
        self.latencies: list[float] = []
        self._step = 0

    async def _exchange(self, inject: Inject) -> list[SentMessage]:
        mark = self.emulator.cursor(self.uid)
        before = self.chats.effects[self.uid]
        started = time.perf_counter()
        inject()
        if self.expected is None:
            # Every step of the order answers: wait for the first reply, then for quiet.
            await self.chats.wait(self.uid, before + 1, STEP_TIMEOUT)
            await self.chats.quiet(QUIET)
            self.learnt.append(self.chats.effects[self.uid] - before)
        else:
            target = before + self.expected[self._step]
            await self.chats.wait(self.uid, target, STEP_TIMEOUT)
            self.latencies.append(time.perf_counter() - started)
        self._step += 1
        return self.emulator.sent_messages(self.uid, since=mark)

    async def say(self, text: str) -> list[SentMessage]:
        return await self._exchange(lambda: self.emulator.send_message(self.uid, text))

    async def press(self, message: SentMessage, data: str) -> list[SentMessage]:
        return await self._exchange(
            lambda: self.emulator.press_button(self.uid, message.message_id, data)
        )

    async def order(self, pause: Callable[[], Awaitable[None]]) -> bool:
        """One complete order; True when the label PDF arrived."""
        await self.say("/start")
        await pause()
        await self.say("/order")
        await pause()
        await self.say(f"Customer {marker(self.uid)}, 1 Main St, Albany, NY 12207-3301, (518) 555-0142")
        await pause()
        await self.say(RECIPIENT)
        await pause()
        await self.say("1 lb 4 oz")
        await pause()
        [rates] = await self.say("6x6x6")
        await pause()
        replies = await self.press(rates, rates.buttons[0][1] or "")
        summary = replies[-1]
        await pause()
        replies = await self.press(summary, summary.callback_data_for("Pay"))
        return any(m.document is not None for m in replies)


async def _read_json(stream: asyncio.StreamReader, key: str) -> dict[str, Any]:
    while True:
        line = await stream.readline()
        if not line:
            raise RuntimeError(f"worker exited before reporting {key!r}")
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and key in data:
                return data


async def run(customers: int, table: Table, *, think: float = 0.0, pool: int = 8) -> None:
    emulator = BotApiEmulator(TOKEN, rate_limits=False)
    await emulator.start()
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    chats = _Chats()
    emulator.add_chat_listener(chats.changed)
    warmup_uid = FIRST_USER
    users = list(range(FIRST_USER + 1, FIRST_USER + 1 + customers))
    for uid in [warmup_uid, *users]:
        emulator.add_user(uid, first_name=f"C{uid}")
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.worker",
        "--telegram-url",
        emulator.url,
        "--carrier-url",
        carrier.base_url,
        "--token",
        TOKEN,
        "--first-user",
        str(FIRST_USER),
        "--customers",
        str(customers + 1),
        "--pool",
        str(pool),
        stdout=asyncio.subprocess.PIPE,
    )
    label = "orders" if think == 0 else f"orders, think {think:g} s"
    try:
        assert worker.stdout is not None
        await asyncio.wait_for(_read_json(worker.stdout, "ready"), 600)
        warmup = _Customer(warmup_uid, emulator, chats, None)
        if not await warmup.order(_no_pause):
            raise RuntimeError("the warm-up customer got no label")
        # Messages the bot sent to one customer for one order, and edits of them (every
        # change in the chat is one or the other): Telegram's ~30 messages/s cap per bot
        # makes messages per order the bound on customers served at once.
        messages_per_order = len(emulator.sent_messages(warmup_uid))
        edits_per_order = sum(warmup.learnt) - messages_per_order
        errors = 0

        async def pause() -> None:
            if think > 0:
                await asyncio.sleep(random.uniform(0, 2 * think))  # noqa: S311 - not crypto

        async def customer(c: _Customer) -> None:
            nonlocal errors
            try:
                await pause()  # arrivals spread over the first think time, not one burst
                if not await c.order(pause):
                    errors += 1
            except Exception:  # noqa: BLE001 - counted and reported, not raised
                errors += 1

        measured = [_Customer(uid, emulator, chats, warmup.learnt) for uid in users]
        process = psutil.Process(worker.pid)
        cpu_before = sum(process.cpu_times()[:2])
        started = time.perf_counter()
        await asyncio.gather(*(customer(c) for c in measured))
        elapsed = time.perf_counter() - started
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        worker.send_signal(signal.SIGTERM)
        final = await asyncio.wait_for(_read_json(worker.stdout, "audit_mismatches"), 600)
        await asyncio.wait_for(worker.wait(), 120)
        crosstalk = 0
        for uid in users:
            own = marker(uid)
            for message in emulator.sent_messages(uid):
                found = _MARKER.findall(message.content)
                if message.chat_id != uid or any(name != own for name in found):
                    crosstalk += 1
        latencies = [x for c in measured for x in c.latencies]
        updates = len(latencies)
        table.add(label, "customers", f"{customers:,} (+1 warm-up)")
        table.add(label, "updates", f"{updates:,}")
        table.add(
            label,
            "per order",
            f"{len(warmup.learnt)} updates, {messages_per_order} messages, {edits_per_order} edits",
        )
        table.add(label, "total time", f"{elapsed:.1f} s")
        table.add(label, "throughput", f"{updates / elapsed:.0f} updates/s")
        p50, p95, p99 = (_pct(latencies, q) for q in (0.5, 0.95, 0.99))
        table.add(label, "latency p50/p95/p99", f"{p50:.0f} / {p95:.0f} / {p99:.0f} ms")
        table.add(
            label,
            "worker CPU",
            f"{cpu / max(updates, 1) * 1000:.1f} ms per update, busy {cpu / elapsed:.0%}",
        )
        table.add(label, "errors", str(errors))
        table.add(label, "cross-talk", str(crosstalk))
        table.add(label, "labels bought", f"{int(final['labels']):,}")
        mismatches = int(final["audit_mismatches"])
        table.add(
            label,
            "audit-ledger",
            f"ok ({int(final['audit_checked']):,} accounts)"
            if not mismatches
            else f"{mismatches} mismatches",
        )
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await carrier.stop()
        await emulator.stop()


async def _no_pause() -> None:
    return None
