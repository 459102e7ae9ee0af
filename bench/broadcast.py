"""A broadcast to N users with the emulator enforcing Telegram's 30 messages/s and per-chat
limits: achieved rate, 429s, messages lost or duplicated."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bench.common import ADMIN_ID, Table, bench_settings
from bot.harness import BotHarness
from sandbox.shipstation import FakeShipStation

RATE = 30.0  # the setting's ceiling, Telegram's 30/s: nothing else is sent during the run


async def run(users: int, table: Table) -> None:
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    settings = bench_settings(carrier.base_url, overall_max_rate=30)
    settings = settings.model_copy(
        update={"broadcast": settings.broadcast.model_copy(update={"rate_per_second": RATE})}
    )
    harness = BotHarness(settings, rate_limits=True)
    await harness.start()
    try:
        now = datetime.now(UTC)
        ids = list(range(40_000_000, 40_000_000 + users))
        await harness.mongo.db["users"].insert_many(
            [
                {
                    "_id": uid,
                    "language": "en",
                    "balance_cents": 0,
                    "blocked": False,
                    "notify_opt_out": False,
                    "bot_blocked_at": None,
                    "created_at": now,
                    "last_seen_at": now,
                    "update_count": 1,
                }
                for uid in ids
            ]
        )
        for uid in ids:
            harness.emulator.add_user(uid)
        services = harness.application.bot_data.require_services()
        started = time.perf_counter()
        broadcast = await services.broadcasts.start(
            ADMIN_ID, kind="manual", texts={"en": "Bench broadcast"}, admin_language="en"
        )
        emulator = harness.emulator
        # Poll only the chats still waiting, so the check costs less as the run goes on.
        waiting = set(ids)
        first_at: float | None = None
        first_count = 0
        last_change = time.perf_counter()
        while waiting:
            await asyncio.sleep(0.5)
            reached = {uid for uid in waiting if emulator.sent_messages(uid)}
            now = time.perf_counter()
            if reached:
                waiting -= reached
                last_change = now
                if first_at is None:
                    first_at, first_count = now, len(reached)
            elif now - last_change > 60:
                break  # stuck: report what arrived
        finished = last_change
        # Then wait for the runner to call it done, so a late duplicate would be counted.
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            doc = await services.broadcasts.get(str(broadcast["_id"]))
            if doc is not None and doc["status"] == "done":
                break
            await asyncio.sleep(0.5)
        elapsed = finished - started
        per_chat = [len(emulator.sent_messages(uid)) for uid in ids]
        delivered = sum(1 for n in per_chat if n)
        rate = delivered / elapsed
        sending = (finished - first_at) if first_at is not None else 0.0
        sustained = (delivered - first_count) / sending if sending > 0 else 0.0
        table.add("broadcast", "users", f"{users:,}")
        table.add("broadcast", "time", f"{elapsed:.0f} s")
        table.add(
            "broadcast",
            "achieved rate while sending",
            f"{sustained:.1f}/s = {sustained / 30:.1%} of 30/s",
        )
        table.add(
            "broadcast",
            "from confirmation to the last message",
            f"{rate:.1f}/s = {rate / 30:.1%} of 30/s (includes the job's start-up delay)",
        )
        table.add("broadcast", "429s from the emulator", str(emulator.stats.rate_limited))
        table.add("broadcast", "lost", str(sum(1 for n in per_chat if n == 0)))
        table.add("broadcast", "duplicated", str(sum(1 for n in per_chat if n > 1)))
    finally:
        await harness.close()
        await carrier.stop()
