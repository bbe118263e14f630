"""A KRaft cluster id that starts with "-" formats and starts a broker (issue 18).

A cluster id is 16 random bytes in URL-safe base64, so one in 64 starts with "-". Passed to
``StorageTool format`` as a separate argument after ``-t`` it is read as an option and the broker
never starts. Both places that format a storage are checked with such an id: the local stack's
``scripts/stack/kafka.sh`` and the tests' own ``KafkaInstance``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.auth.kafka_instance import KafkaInstance
from tiktok_pipeline.local import free_port

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "scripts" / "stack" / "kafka.sh"
# 22 characters of URL-safe base64, as Kafka's Uuid.toString() writes them, beginning with "-".
DASH_ID = "-bFm3Q5hTxKkq1gR2Zp8YA"


def _meta_cluster_id(data_dir: Path) -> str:
    for line in (data_dir / "meta.properties").read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1]
    raise AssertionError(f"no cluster.id in {data_dir / 'meta.properties'}")


async def test_kafka_instance_formats_and_starts_with_a_dash_cluster_id(tmp_path: Path) -> None:
    async with KafkaInstance(tmp_path / "kafka", cluster_id=DASH_ID) as kafka:
        assert await kafka.ready()
    assert _meta_cluster_id(tmp_path / "kafka" / "data") == DASH_ID


def test_stack_script_formats_and_starts_with_a_dash_cluster_id(tmp_path: Path) -> None:
    stack_dir = tmp_path / "stack"
    (stack_dir / "kafka").mkdir(parents=True)
    # kafka.sh reuses a cluster id it finds here, as it does after an interrupted first start.
    (stack_dir / "kafka" / "cluster-id").write_text(DASH_ID + "\n")
    env = {
        **os.environ,
        "STACK_DIR": str(stack_dir),
        "STACK_KAFKA_PORT": str(free_port()),
        "STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m",
    }
    try:
        up = subprocess.run(
            ["bash", str(KAFKA_SH), "up"], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert up.returncode == 0, up.stderr[-3000:]
        status = subprocess.run(
            ["bash", str(KAFKA_SH), "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "running" in status.stdout
    finally:
        subprocess.run(
            ["bash", str(KAFKA_SH), "down"], env=env, capture_output=True, timeout=120, check=False
        )
    assert _meta_cluster_id(stack_dir / "kafka" / "data") == DASH_ID
