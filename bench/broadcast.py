"""A broadcast to N users with the emulator enforcing Telegram's 30 messages/s and per-chat
limits: achieved rate, 429s, messages lost or duplicated."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bench.common import ADMIN_ID, Table, bench_settings
from bot.harness import BotHarness
from sandbox.shipstation import FakeShipStation

RATE = 29.0  # the setting's ceiling is Telegram's 30/s; 29 leaves room for progress edits


async def run(users: int, table: Table) -> None:
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    settings = bench_settings(carrier, overall_max_rate=30)
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
        await services.broadcasts.start(
            ADMIN_ID, kind="manual", texts={"en": "Bench broadcast"}, admin_language="en"
        )
        emulator = harness.emulator

        def delivered() -> int:
            return sum(1 for uid in ids if emulator.sent_messages(uid))

        last = -1
        while True:
            await asyncio.sleep(2)
            count = delivered()
            if count >= users or count == last and time.perf_counter() - started > 60:
                break
            last = count
        elapsed = time.perf_counter() - started
        per_chat = [len(emulator.sent_messages(uid)) for uid in ids]
        rate = sum(1 for n in per_chat if n) / elapsed
        table.add("broadcast", "users", f"{users:,}")
        table.add("broadcast", "time", f"{elapsed:.0f} s")
        table.add("broadcast", "achieved rate", f"{rate:.1f}/s = {rate / 30:.0%} of 30/s")
        table.add("broadcast", "429s from the emulator", str(emulator.stats.rate_limited))
        table.add("broadcast", "lost", str(sum(1 for n in per_chat if n == 0)))
        table.add("broadcast", "duplicated", str(sum(1 for n in per_chat if n > 1)))
    finally:
        await harness.close()
        await carrier.stop()
