"""One run of scripts/deploy-check.sh per test session, and its rendered manifests.

The check builds helm, kustomize and promql-check on first use (about 5 minutes on 2 cores when
nothing is cached), lints the chart, renders it with helm for dev, prod and the CI variant and
through the kustomize overlays, and validates every render.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "deploy-check.sh"
# helm template renders and kustomize overlays (which render the same chart).
RENDERS = ("helm-dev", "helm-prod", "helm-ci", "dev", "prod")

Rendered = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="session")
def check_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("rendered")
    env = dict(os.environ, DEPLOY_CHECK_OUT=str(out), PYTHON=sys.executable)
    result = subprocess.run(
        ["bash", str(CHECK)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False
    )
    return result, out


@pytest.fixture(scope="session")
def rendered(check_run: tuple[subprocess.CompletedProcess[str], Path]) -> Rendered:
    result, out = check_run
    if result.returncode != 0:
        pytest.fail(f"deploy-check.sh failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return {
        name: [d for d in yaml.safe_load_all((out / f"{name}.yaml").read_text()) if d] for name in RENDERS
    }


@pytest.fixture(scope="session")
def helm(check_run: tuple[subprocess.CompletedProcess[str], Path]) -> str:
    """The helm binary deploy-check.sh used (built or cached by it)."""
    result, _ = check_run
    for line in result.stderr.splitlines():
        if line.startswith("deploy-check: helm: ") and "(" in line:
            return line.rsplit("(", 1)[1].rstrip(")")
    pytest.fail("deploy-check.sh did not report its helm binary:\n" + result.stderr)
