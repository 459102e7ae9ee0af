"""``make bench`` at toy sizes: every benchmark runs end to end and its correctness figures
(errors, cross-talk, ledger audit, lost and duplicated messages) are clean. Timings are
printed by the real runs in ``bench/``, never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _rows(output: str) -> dict[tuple[str, str], str]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and line.startswith("|"):
            rows[(cells[0], cells[1])] = cells[2]
    return rows


def test_every_benchmark_runs_clean_at_toy_size() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--customers",
            "3",
            "--think",
            "0,0.2",
            "--broadcast-users",
            "40",
            "--sessions",
            "100,300",
            "--bulk-rows",
            "20",
            "--bulk-buy-rows",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = _rows(result.stdout)
    assert not [key for key in rows if key[1] == "failed"], result.stdout
    for label in ("orders", "orders, think 0.2 s"):
        assert rows[(label, "updates")] == "24", result.stdout
        assert rows[(label, "errors")] == "0"
        assert rows[(label, "cross-talk")] == "0"
        assert rows[(label, "labels bought")] == "4"
        assert rows[(label, "audit-ledger")].startswith("ok")
    assert rows[("broadcast", "lost")] == "0"
    assert rows[("broadcast", "duplicated")] == "0"
    assert rows[("broadcast", "429s from the emulator")] == "0"
    assert rows[("bulk", "rows ok in the report")] == "20"
    assert rows[("bulk", "labels bought")] == "3"
    assert rows[("bulk", "audit-ledger")] == "ok"
    assert rows[("memory", "live conversations loaded (300)")] == "300"
    assert ("startup", "to first getUpdates, 300 sessions") in rows
