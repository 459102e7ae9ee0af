"""Bulk labels: the validation report of a large file, and a paid job's carrier pacing.

1. ``rows`` valid rows sent as a CSV document: seconds from the upload to the report (the
   whole path: getFile, download, parse, validate, store, reply with the report).
2. ``buy_rows`` rows quoted and bought at the configured ``bulk.carrier_rate_per_second``:
   how long each phase took, the achieved carrier call rate and the most calls seen in any
   one-second window (the limit holds when that stays at or under the setting + 1).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

from bench.common import Table, start_shop

USER = 77_000_001
HEADER = "name,street1,street2,city,state,postal_code,phone,weight,length,width,height"
SENDER = {
    "name": "Jane Doe",
    "street1": "500 W 5th Ave",
    "street2": None,
    "city": "New York",
    "state": "NY",
    "postal_code": "10001",
    "phone": "+12125550123",
}


class _TimedCalls(list[Any]):
    """The fake carrier's call log, with the time of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def append(self, item: Any) -> None:
        self.at.append(time.monotonic())
        super().append(item)


def _sheet(rows: int) -> bytes:
    lines = [HEADER] + [
        f"Customer {n},{100 + n} Main St,Apt {n},Springfield,IL,62704,(217) 555-0100,"
        f"{1 + n % 20},10,8,4"
        for n in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def _max_per_second(times: list[float]) -> int:
    best = 0
    for i, start in enumerate(times):
        best = max(best, bisect.bisect_left(times, start + 1.0) - i)
    return best


async def run(rows: int, buy_rows: int, table: Table) -> None:
    harness, carrier = await start_shop()
    try:
        harness.add_user(USER, first_name="Reseller")
        await harness.say(USER, "/start")
        app = harness.application
        storage = app.bot_data.require_storage()
        settings = app.bot_data.require_settings()
        await storage.templates.create(USER, "Warehouse", SENDER, now=harness.clock())

        started = time.perf_counter()
        replies = await harness.send_document(USER, _sheet(rows), "big.csv", timeout=120)
        elapsed = time.perf_counter() - started
        report = next((m for m in replies if "Validation report" in m.content), None)
        ok = report is not None and f"{rows} rows ok" in report.content
        table.add("bulk", f"validation report, {rows} rows", f"{elapsed:.2f} s")
        table.add("bulk", "rows ok in the report", str(rows) if ok else "WRONG")

        rate = settings.bulk.carrier_rate_per_second
        calls = _TimedCalls()
        carrier.calls = calls
        replies = await harness.send_document(USER, _sheet(buy_rows), "buy.csv")
        report = next(m for m in replies if "Validation report" in m.content)
        assert app.job_queue is not None
        [job] = app.job_queue.get_jobs_by_name("bulk:purchase")
        mark = harness.emulator.cursor(USER)
        started = time.perf_counter()
        await harness.press(USER, report, "Sender: Warehouse")
        await job.run(app)  # quotes (or waits for the scheduled run that does)
        quote_seconds = time.perf_counter() - started
        [quote] = [
            m
            for m in harness.emulator.sent_messages(USER, since=mark)
            if "Pay" in " ".join(b for b, _ in m.buttons)
        ]
        pay = quote.callback_data_for("Pay")
        total = int(pay.rsplit(":", 1)[1])
        await storage.ledger.apply(
            user_id=USER, amount_cents=total, kind="topup", key="bench:bulk", now=harness.clock()
        )
        await harness.press(USER, quote, data=pay)
        started = time.perf_counter()
        while len(carrier.labels) < buy_rows:
            await job.run(app)
            await asyncio.sleep(0.05)
        await job.run(app)  # the delivery, if the scheduled run did not do it
        buy_seconds = time.perf_counter() - started
        label_calls = [c for c, r in zip(calls.at, calls, strict=True)
                       if r.operation in ("validate_addresses", "get_rates", "create_label")]
        span = (label_calls[-1] - label_calls[0]) if len(label_calls) > 1 else 0.0
        table.add("bulk", f"quote, {buy_rows} rows", f"{quote_seconds:.1f} s")
        table.add("bulk", f"purchase, {buy_rows} rows", f"{buy_seconds:.1f} s")
        table.add("bulk", "carrier rate limit (setting)", f"{rate:g} calls/s")
        achieved = (len(label_calls) - 1) / span if span else 0.0
        table.add("bulk", "carrier calls/s achieved", f"{achieved:.2f}")
        table.add("bulk", "max carrier calls in any 1 s", str(_max_per_second(label_calls)))
        table.add("bulk", "labels bought", str(len(carrier.labels)))
        _, mismatches = await storage.ledger.audit()
        table.add("bulk", "audit-ledger", "ok" if not mismatches else f"{len(mismatches)} bad")
    finally:
        await harness.close()
        await carrier.stop()
