"""Print every PromQL expression of the alert rules and the Grafana dashboard as JSON lines.

The output feeds deploy/tools/promql-check (Prometheus's own parser). Grafana's variables are
replaced with values of the right type first: durations for ``$__rate_interval``/``$__range``/
``$__interval``, a match-all regex for template variables such as ``$namespace``.

Usage: promql_exprs.py ALERTS.yml DASHBOARD.json [...]
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}
TEMPLATE_VARIABLE = re.compile(r"\$\{?[A-Za-z_]\w*\}?")


def grafana_to_promql(expr: str) -> str:
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    return TEMPLATE_VARIABLE.sub(".*", expr)


def from_rules(path: Path) -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            yield f"{path.name}: {group['name']}/{name}", rule["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def from_dashboard(path: Path) -> Iterator[tuple[str, str]]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = (
                    f"{path.name}: panel {panel.get('id')} {panel.get('title', '')!r} {target.get('refId')}"
                )
                yield where, grafana_to_promql(target["expr"])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write(__doc__ or "")
        return 2
    for name in argv[1:]:
        path = Path(name)
        items = from_dashboard(path) if path.suffix == ".json" else from_rules(path)
        for where, expr in items:
            sys.stdout.write(json.dumps({"where": where, "expr": expr}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
