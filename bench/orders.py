"""N customers each run a complete label order concurrently through the emulator."""

from __future__ import annotations

import asyncio
import re
import time

from bench.common import RECIPIENT, Table, start_shop

STEP_TIMEOUT = 600.0  # measure latency under overload instead of failing steps
_MARKER = re.compile(r"Customer ([A-Z][a-z]+)")


def marker(uid: int) -> str:
    """A per-customer name (letters only, as the address parser wants)."""
    return "".join(chr(ord("a") + int(d)) for d in str(uid)).title()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def run(customers: int, table: Table) -> None:
    harness, carrier = await start_shop()
    latencies: list[float] = []
    errors = 0
    try:
        storage = harness.application.bot_data.require_storage()
        users = list(range(20_000_000, 20_000_000 + customers))
        for uid in users:
            harness.add_user(uid, first_name=f"C{uid}")

        async def step(uid: int, text: str | None = None, press: tuple[object, str] | None = None):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            if press is not None:
                message, data = press
                replies = await harness.press(uid, message, data=data, timeout=STEP_TIMEOUT)  # type: ignore[arg-type]
            else:
                assert text is not None
                replies = await harness.say(uid, text, timeout=STEP_TIMEOUT)
            latencies.append(time.perf_counter() - started)
            return replies

        async def customer(uid: int) -> None:
            nonlocal errors
            try:
                await step(uid, "/start")
                await storage.ledger.apply(
                    user_id=uid,
                    amount_cents=10_000,
                    kind="topup",
                    key=f"bench:{uid}",
                    now=harness.clock(),
                )
                await step(uid, "/order")
                await step(uid, f"Customer {marker(uid)}, 1 Main St, Albany, NY 12207")
                await step(uid, RECIPIENT)
                await step(uid, "1 lb 4 oz")
                [rates] = await step(uid, "6x6x6")
                replies = await step(uid, press=(rates, rates.buttons[0][1] or ""))
                summary = replies[-1]
                replies = await step(uid, press=(summary, summary.callback_data_for("Pay")))
                if not any(m.document is not None for m in replies):
                    errors += 1
            except Exception:  # noqa: BLE001 - counted and reported, not raised
                errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(customer(uid) for uid in users))
        elapsed = time.perf_counter() - started
        crosstalk = 0
        for uid in users:
            own = marker(uid)
            for message in harness.emulator.sent_messages(uid):
                found = _MARKER.findall(message.content)
                if message.chat_id != uid or any(name != own for name in found):
                    crosstalk += 1
        _, mismatches = await storage.ledger.audit()
        updates = len(latencies)
        table.add("orders", "customers", str(customers))
        table.add("orders", "updates", str(updates))
        table.add("orders", "total time", f"{elapsed:.1f} s")
        table.add("orders", "throughput", f"{updates / elapsed:.0f} updates/s")
        p50, p95, p99 = (_pct(latencies, q) for q in (0.5, 0.95, 0.99))
        table.add("orders", "latency p50/p95/p99", f"{p50:.0f} / {p95:.0f} / {p99:.0f} ms")
        table.add("orders", "errors", str(errors))
        table.add("orders", "cross-talk", str(crosstalk))
        table.add(
            "orders", "audit-ledger", "ok" if not mismatches else f"{len(mismatches)} mismatches"
        )
    finally:
        await harness.close()
        await carrier.stop()
