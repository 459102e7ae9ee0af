"""Worker memory with 10k / 100k stored sessions and users, and start-up time.

Each size runs in a fresh interpreter (``python -m bench.memory K``) so figures do not mix.
The in-memory database lives in the worker's own process, so the table shows the resident
memory of the database (after seeding) and what the application adds on top of it when it
starts with that many live conversations stored.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psutil

from bench.common import Table


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def probe(count: int) -> dict[str, float]:
    from bench.common import bench_settings
    from bot.harness import BotHarness
    from sandbox.shipstation import FakeShipStation
    from storage.client import Mongo

    carrier = FakeShipStation(instant=True)
    await carrier.start()
    settings = bench_settings(carrier.base_url)
    mongo = Mongo.memory(settings.mongo.database)
    now = datetime.now(UTC)
    users, sessions = [], []
    for i in range(count):
        uid = 30_000_000 + i
        users.append(
            {
                "_id": uid,
                "language": "en",
                "balance_cents": 0,
                "blocked": False,
                "created_at": now,
                "last_seen_at": now,
                "update_count": 3,
            }
        )
        sessions.append(
            {
                "_id": f"{uid}:{uid}",
                "key": [uid, uid],
                "states": {"order": "awaiting_weight"},
                "expires_at": now + timedelta(minutes=50),
                "updated_at": now,
            }
        )
    await mongo.db["users"].insert_many(users)
    await mongo.db["sessions"].insert_many(sessions)
    del users, sessions
    seeded = _rss()
    harness = BotHarness(settings, mongo=mongo, rate_limits=False)
    started = time.perf_counter()
    await harness.emulator.start()
    harness._emulator_started = True  # noqa: SLF001 - the emulator is timed separately
    begin = time.perf_counter()
    await harness.start()
    ready = time.perf_counter() - begin
    await harness.emulator.wait_until(
        lambda: harness.emulator.stats.last_get_updates_at is not None, timeout=600
    )
    first_poll = time.perf_counter() - begin
    live = sum(h.live_count() for h in harness.application.bot_data.conversations.values())
    after = _rss()
    await harness.close()
    await carrier.stop()
    del started
    return {
        "count": count,
        "seeded_rss": seeded,
        "app_rss": after,
        "live": live,
        "ready_s": ready,
        "first_poll_s": first_poll,
    }


def run(counts: list[int], table: Table, *, startup: bool) -> None:
    results = []
    for count in counts:
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", str(count)],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        n = f"{int(r['count']):,}"
        table.add(
            "memory", f"RSS after seeding {n} users+sessions", f"{r['seeded_rss'] / 2**20:.0f} MB"
        )
        table.add("memory", f"RSS with the app running ({n})", f"{r['app_rss'] / 2**20:.0f} MB")
        table.add(
            "memory",
            f"app on top of the data ({n})",
            f"{(r['app_rss'] - r['seeded_rss']) / 2**20:.1f} MB",
        )
        table.add("memory", f"live conversations loaded ({n})", f"{int(r['live']):,}")
        if startup:
            table.add("startup", f"to ready, {n} sessions", f"{r['ready_s']:.2f} s")
            table.add(
                "startup", f"to first getUpdates, {n} sessions", f"{r['first_poll_s']:.2f} s"
            )
    if len(results) >= 2:
        a, b = results[0], results[-1]
        grow = (b["app_rss"] - b["seeded_rss"]) - (a["app_rss"] - a["seeded_rss"])
        per = grow / max(b["live"] - a["live"], 1)
        table.add("memory", "app growth between sizes", f"{grow / 2**20:.1f} MB")
        table.add("memory", "bytes per live conversation", f"{per:.0f} B")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(int(sys.argv[1])))))
