"""``python -m bot audit-ledger``: balance == sum(ledger) for every user.

Safe on a live system: each user is checked on its own against the entries applied up to
the ``ledger_seq`` read with the balance (``LedgerRepo.audit_user``), so money moving during
the audit is never reported as a mismatch. Exit status: 0 consistent, 1 a mismatch, 2 no
mismatch but some users' ledgers moved during every attempt and were not checked.
"""

from __future__ import annotations

import sys
from typing import TextIO

from storage.repos import Storage

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_UNCHECKED = 2


async def run_audit(storage: Storage, *, repair: bool, out: TextIO = sys.stdout) -> int:
    """Prints one line per mismatch and a summary; returns the exit status (1 = mismatch)."""
    await storage.start()
    try:
        report = await storage.ledger.audit_report(repair=repair)
    finally:
        await storage.close()
    for m in report.mismatches:
        difference = m.balance_cents - m.ledger_sum_cents
        print(
            f"MISMATCH user {m.user_id}: balance_cents={m.balance_cents} "
            f"sum(ledger)={m.ledger_sum_cents} difference={difference}",
            file=out,
        )
    for user_id in report.unsettled:
        print(f"UNCHECKED user {user_id}: the ledger moved during every attempt", file=out)
    if not repair:
        for user_id in report.pending:
            print(f"PENDING user {user_id}: an entry is written but not yet applied", file=out)
    summary = (
        f"audit-ledger: {report.checked} users checked, {len(report.mismatches)} mismatches"
    )
    if report.unsettled:
        summary += f", {len(report.unsettled)} unchecked (busy; run again)"
    print(summary, file=out)
    if report.mismatches:
        return EXIT_MISMATCH
    return EXIT_UNCHECKED if report.unsettled else EXIT_OK
