"""``python -m bot audit-ledger``: balance == sum(ledger) for every user."""

from __future__ import annotations

import sys
from typing import TextIO

from storage.repos import Storage


async def run_audit(storage: Storage, *, repair: bool, out: TextIO = sys.stdout) -> int:
    """Prints one line per mismatch and a summary; returns the exit status (1 = mismatch)."""
    await storage.start()
    try:
        checked, mismatches = await storage.ledger.audit(repair=repair)
    finally:
        await storage.close()
    for m in mismatches:
        difference = m.balance_cents - m.ledger_sum_cents
        print(
            f"MISMATCH user {m.user_id}: balance_cents={m.balance_cents} "
            f"sum(ledger)={m.ledger_sum_cents} difference={difference}",
            file=out,
        )
    print(f"audit-ledger: {checked} users checked, {len(mismatches)} mismatches", file=out)
    return 1 if mismatches else 0
