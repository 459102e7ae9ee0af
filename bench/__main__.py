"""``make bench``: prints one table of figures. Not a pass/fail test.

python -m bench [--customers 1000] [--think 0,8] [--sessions 10000,100000]
                [--broadcast-users 10000] [--bulk-rows 500] [--bulk-buy-rows 30]
                [--only orders,broadcast,bulk,memory,startup]

The order benchmark runs once per ``--think`` value (a customer's mean pause between a
reply and their next message, in seconds; 0 = everyone sends as soon as answered).
``MONGO_URL`` (a real MongoDB) makes the order benchmark's worker use it instead of the
in-memory database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench import broadcast, bulk, memory, orders
from bench.common import Table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--think", default="0,8", help="mean pauses in seconds, comma-separated")
    parser.add_argument("--sessions", default="10000,100000")
    parser.add_argument("--broadcast-users", type=int, default=10_000)
    parser.add_argument("--bulk-rows", type=int, default=500)
    parser.add_argument("--bulk-buy-rows", type=int, default=30)
    parser.add_argument("--only", default="orders,broadcast,bulk,memory,startup")
    args = parser.parse_args()
    only = set(args.only.split(","))
    table = Table([])
    if "orders" in only:
        for think in (float(x) for x in args.think.split(",") if x):
            try:
                asyncio.run(orders.run(args.customers, table, think=think))
            except Exception as exc:  # noqa: BLE001 - a failed benchmark is a row, not a crash
                table.add("orders", "failed", f"{type(exc).__name__}: {exc}"[:80])
    if "broadcast" in only:
        try:
            asyncio.run(broadcast.run(args.broadcast_users, table))
        except Exception as exc:  # noqa: BLE001 - a failed benchmark is a row, not a crash
            table.add("broadcast", "failed", f"{type(exc).__name__}: {exc}"[:80])
    if "bulk" in only:
        try:
            asyncio.run(bulk.run(args.bulk_rows, args.bulk_buy_rows, table))
        except Exception as exc:  # noqa: BLE001 - a failed benchmark is a row, not a crash
            table.add("bulk", "failed", f"{type(exc).__name__}: {exc}"[:80])
    counts = [int(x) for x in args.sessions.split(",") if x]
    if "memory" in only or "startup" in only:
        memory.run(counts, table, startup="startup" in only)
    print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
