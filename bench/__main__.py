"""``make bench``: prints one table of figures. Not a pass/fail test.

python -m bench [--customers 1000] [--sessions 10000,100000] [--only orders,memory,...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench import broadcast, memory, orders
from bench.common import Table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--sessions", default="10000,100000")
    parser.add_argument("--broadcast-users", type=int, default=10_000)
    parser.add_argument("--only", default="orders,broadcast,memory,startup")
    args = parser.parse_args()
    only = set(args.only.split(","))
    table = Table([])
    if "orders" in only:
        try:
            asyncio.run(orders.run(args.customers, table))
        except Exception as exc:  # noqa: BLE001 - a failed benchmark is a row, not a crash
            table.add("orders", "failed", f"{type(exc).__name__}: {exc}"[:80])
    if "broadcast" in only:
        try:
            asyncio.run(broadcast.run(args.broadcast_users, table))
        except Exception as exc:  # noqa: BLE001 - a failed benchmark is a row, not a crash
            table.add("broadcast", "failed", f"{type(exc).__name__}: {exc}"[:80])
    counts = [int(x) for x in args.sessions.split(",") if x]
    if "memory" in only or "startup" in only:
        memory.run(counts, table, startup="startup" in only)
    print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
