"""Where output goes: results on stdout (a table, a line, or JSON with ``--json``), everything else
(progress bars, notices, errors) on stderr, so ``| jq`` and ``$(...)`` see only the result."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(stderr=True)  # progress, notices, errors
out = Console()  # results


def emit_json(value: Any) -> None:
    """One JSON document on stdout (never wrapped or coloured)."""
    sys.stdout.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def notice(message: str) -> None:
    console.print(message, highlight=False)
