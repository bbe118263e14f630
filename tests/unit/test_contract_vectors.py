"""One contract, three readers agreeing.

Every test vector under ``schemas/examples/<event>/{valid,invalid}/`` gets a verdict from
1. the services' own decoder (``common.events.decode``),
2. ``jsonschema`` in Python, with format checking and ECMA-262 patterns (``regress``), and
3. Ajv (draft 2020-12, ajv-formats) under Node, installed by scripts/contracts/install.sh,
and all three must give the vector's directory's verdict. The few invalid vectors whose rule JSON
Schema cannot say (``schemas/examples/beyond-json-schema.json``) must be refused by the decoder and
accepted by both schema readers: if a schema reader starts refusing one, the rule has become sayable
and the list is out of date.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import regress
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

from common.events import DATA_MODELS, BadEvent, decode, json_schemas

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
BEYOND: dict[str, str] = json.loads((EXAMPLES / "beyond-json-schema.json").read_text())
VECTORS = sorted(EXAMPLES.glob("*/*/*.json"))


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # JSON Schema's patterns are ECMA-262; Python's re would let "$" match before a final newline.
    if validator.is_type(instance, "string") and regress.Regex(pattern, "u").find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def _event(path: Path) -> str:
    return path.relative_to(EXAMPLES).parts[0]


def _expected(path: Path) -> tuple[bool, bool]:
    """(the decoder accepts, the schema readers accept)"""
    if path.parent.name == "valid":
        return True, True
    return False, str(path.relative_to(EXAMPLES)) in BEYOND


def python_verdict(path: Path) -> tuple[bool, str]:
    event = _event(path)
    try:
        decode(path.read_bytes(), DATA_MODELS[event], expected_type=event)
    except BadEvent as exc:
        return False, f"{exc.code}: {exc.message}"
    return True, ""


def jsonschema_verdict(path: Path) -> tuple[bool, str]:
    schema = json.loads((SCHEMAS / f"{_event(path)}.v1.json").read_text())
    validator = EcmaValidator(schema, format_checker=FormatChecker())
    errors = [e.message for e in validator.iter_errors(json.loads(path.read_text()))]
    return not errors, "; ".join(errors)[:500]


@pytest.fixture(scope="module")
def ajv_verdicts() -> dict[str, tuple[bool, str]]:
    node = shutil.which("node")
    assert node, "node is not installed (make install: apt-get install nodejs npm)"
    modules = subprocess.run(
        [str(ROOT / "scripts/contracts/install.sh")], check=True, capture_output=True, text=True, timeout=300
    ).stdout.strip()
    pairs = [f"{_event(p)}.v1.json={p}" for p in VECTORS]
    out = subprocess.run(
        [node, str(ROOT / "scripts/contracts/validate.cjs"), modules, str(SCHEMAS), *pairs],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    verdicts = {}
    for line in out.splitlines():
        row = json.loads(line)
        verdicts[row["file"]] = (row["valid"], "; ".join(row["errors"]))
    return verdicts


def test_there_are_enough_vectors_for_every_event():
    invalid = [p for p in VECTORS if p.parent.name == "invalid"]
    assert len(invalid) >= 40
    events = {_event(p) for p in VECTORS}
    assert events >= {
        "tiktok.post.requested",
        "tiktok.post.status",
        "tiktok.account.connected",
        "tiktok.access_token.issued",
        "tiktok.token.refresh_requested",
    }
    assert all(p.parent.name in {"valid", "invalid"} for p in VECTORS)
    for name in BEYOND:
        assert (EXAMPLES / name).is_file(), f"beyond-json-schema.json names a missing vector {name}"


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_three_readers_agree(path: Path, ajv_verdicts: dict[str, tuple[bool, str]]) -> None:
    python_ok, schema_ok = _expected(path)
    verdict, why = python_verdict(path)
    assert verdict is python_ok, f"decoder: {why or 'accepted'}"
    verdict, why = jsonschema_verdict(path)
    assert verdict is schema_ok, f"jsonschema: {why or 'accepted'}"
    verdict, why = ajv_verdicts[str(path)]
    assert verdict is schema_ok, f"ajv: {why or 'accepted'}"


def test_the_schemas_are_valid_draft_2020_12_and_describe_every_field():
    for name, schema in json_schemas().items():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(name)
        undescribed = [where for where in _properties(schema, name) if "description" not in where[1]]
        assert not undescribed, f"fields without a description: {[w for w, _ in undescribed]}"
        assert schema["examples"], name
        for example in schema["examples"]:
            validator = EcmaValidator(schema, format_checker=FormatChecker())
            assert not list(validator.iter_errors(example)), name
            event = name.removesuffix(".v1.json")
            decode(json.dumps(example).encode(), DATA_MODELS[event], expected_type=event)


def _properties(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for key, value in (node.get("properties") or {}).items():
            yield f"{where}.{key}", value
            yield from _properties(value, f"{where}.{key}")
        for key, value in node.items():
            if key not in {"properties", "allOf", "examples"}:  # allOf: the rules, not the fields
                yield from _properties(value, f"{where}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _properties(item, where)
