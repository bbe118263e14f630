# ruff: noqa: T201  (a command-line report: prints a table)
"""The fault-tolerance numbers as a Markdown table, for the README.

    python bench/faults_report.py [path/to/faults.json]

Reads what the fault runs of tests/reliability/faults/ recorded in ``.stack/reports/faults.json``
(one section per run kind: ``processes``, ``network``, and ``soak`` when run with ``SOAK=1``); runs
nothing itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / ".stack" / "reports" / "faults.json"

ROWS = [
    ("faults injected", lambda r: _faults(r)),
    ("posts", lambda r: r.get("posts")),
    ("published", lambda r: r.get("published")),
    ("failed", lambda r: r.get("failed")),
    ("lost", lambda r: r.get("losses")),
    ("published twice", lambda r: r.get("duplicates")),
    ("bytes differ", lambda r: r.get("wrong_bytes")),
    ("posts with missing status events", lambda r: r.get("event_gaps")),
    (
        "TikTok 429s / limits exceeded",
        lambda r: f"{r.get('rate_limited_total')} / {len(r.get('limits_exceeded') or [])}",
    ),
    ("accounts lost (reauth_required)", lambda r: r.get("reauth_required")),
    ("run time (s)", lambda r: r.get("run_s")),
    ("seed", lambda r: r.get("seed")),
]


def _faults(run: dict[str, object]) -> str:
    if "faults" in run and isinstance(run["faults"], dict):
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(run["faults"].items()))
        return f"{run.get('faults_total')} ({parts})"
    if "cuts" in run:
        return (
            f"{run['cuts']} cuts mid-stream, {run.get('stalled_connections')} stalled connections "
            f"(longest client wait {run.get('longest_stalled_wait_s')} s)"
        )
    return "?"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not path.exists():
        print(f"no {path}: run `pytest tests/reliability/faults` (SOAK=1 for the long run) first")
        return 0
    report = json.loads(path.read_text())
    kinds = [k for k in ("processes", "network", "soak") if k in report]
    print("| | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for label, value in ROWS:
        print(f"| {label} | " + " | ".join(str(value(report[k])) for k in kinds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
