"""Validate the custom resources in rendered manifests against the JSON Schemas in deploy/schemas/.

The schemas (KEDA, Prometheus Operator, Strimzi kinds the chart renders) are strict subsets written
for this project from each operator's documented API, not copies of the operators' CRDs.

kubernetes-validate knows only built-in kinds: for a custom resource it prints
``WARN ... Couldn't find schema for kind K with api version G/V`` and passes it. This script closes
that gap: every document whose kind has a vendored schema is validated strictly here, and any kind
kubernetes-validate skipped that has no vendored schema is an error, so nothing passes unchecked.

Usage: validate_crds.py RENDERED.yaml KUBERNETES_VALIDATE_OUTPUT.txt
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# (apiVersion, kind) -> schema file in deploy/schemas/
SCHEMAS: dict[tuple[str, str], str] = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic-strimzi-v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "kafkauser-strimzi-v1beta2.json",
}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


SKIPPED = re.compile(r"Couldn't find schema for kind (\S+) with api version (\S+) ")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write(__doc__ or "")
        return 2
    rendered, kv_output = Path(argv[1]), Path(argv[2])
    failures = 0

    for kind, api_version in SKIPPED.findall(kv_output.read_text(encoding="utf-8")):
        if (api_version, kind) not in SCHEMAS:
            say(f"ERROR {rendered}: no schema for {api_version} {kind}: add one to deploy/schemas/")
            failures += 1

    documents: list[dict[str, Any]] = [
        d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d
    ]
    for doc in documents:
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        if key not in SCHEMAS:
            continue
        schema = json.loads((SCHEMA_DIR / SCHEMAS[key]).read_text(encoding="utf-8"))
        validator = jsonschema.Draft202012Validator(schema)
        name = f"{doc['kind'].lower()}/{doc.get('metadata', {}).get('name', '?')}"
        errors = sorted(validator.iter_errors(doc), key=lambda e: e.json_path)
        for error in errors:
            path = ".".join(str(p) for p in error.absolute_path)
            say(
                f"ERROR {rendered} did not validate for resource {name} against {SCHEMAS[key]}: "
                f"{path}: {error.message}"
            )
        if errors:
            failures += 1
        else:
            say(f"INFO {rendered} passed for resource {name} against {SCHEMAS[key]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
