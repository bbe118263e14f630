"""The secured three-node Kafka (scripts/stack/kafka-secure.sh), started once per test session.

``secure_kafka`` brings it up with the script (idempotent: a running cluster is reused) and stops it
at the end of the session when this session started it. ``KAFKA_SECURE_STACK_DIR`` moves its state
(default: the checkout's .stack/).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.kafka_security import KafkaSecurity, parse_security
from tests.conftest import _parse_env_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "stack" / "kafka-secure.sh"


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    ca_file: str
    directory: Path
    passwords: dict[str, str]  # user -> password
    stack_dir: Path
    bring_up_s: float

    def env(self, user: str | None, **overrides: str) -> dict[str, str]:
        """The KAFKA_* client settings of ``user`` (``None``: TLS only, no credentials)."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL" if user else "SSL",
            "KAFKA_SSL_CAFILE": self.ca_file,
        }
        if user is not None:
            env |= {
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": user,
                "KAFKA_SASL_PASSWORD": self.passwords[user],
            }
        return env | overrides

    def security(self, user: str | None, **overrides: str) -> KafkaSecurity:
        env = self.env(user, **overrides)
        env.pop("KAFKA_BOOTSTRAP_SERVERS")
        return parse_security(env)

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "STACK_DIR": str(self.stack_dir), "STACK_PYTHON": sys.executable},
        )


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[SecureKafka]:
    stack_dir = Path(os.environ.get("KAFKA_SECURE_STACK_DIR") or ROOT / ".stack")
    env = {**os.environ, "STACK_DIR": str(stack_dir), "STACK_PYTHON": sys.executable}
    was_running = (
        subprocess.run(
            [str(SCRIPT), "status"], capture_output=True, env=env, check=False, cwd=ROOT
        ).returncode
        == 0
    )
    started = time.monotonic()
    result = subprocess.run(
        [str(SCRIPT), "up"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    bring_up_s = time.monotonic() - started
    if result.returncode != 0:
        pytest.fail(
            f"could not start the secured Kafka ({SCRIPT} up):\n{result.stderr}\n{result.stdout}",
            pytrace=False,
        )
    print(f"\nsecured Kafka up in {bring_up_s:.1f}s ({'reused' if was_running else 'started'})")
    directory = stack_dir / "kafka-secure"
    values = _parse_env_file(directory / "env")
    users = {
        values[name]: values[name.removesuffix("_USER") + "_PASSWORD"]
        for name in values
        if name.startswith("KAFKA_SECURE_") and name.endswith("_USER")
    }
    yield SecureKafka(
        bootstrap=values["KAFKA_SECURE_BOOTSTRAP_SERVERS"],
        ca_file=values["KAFKA_SECURE_CA_FILE"],
        directory=directory,
        passwords=users,
        stack_dir=stack_dir,
        bring_up_s=bring_up_s,
    )
    if not was_running:
        subprocess.run(
            [str(SCRIPT), "down"], capture_output=True, env=env, check=False, cwd=ROOT, timeout=300
        )
