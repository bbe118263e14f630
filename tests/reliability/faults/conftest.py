"""Fixtures of the fault runs, and the seed named in every failed test's report."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from tests.auth.kafka_instance import KafkaInstance
from tests.reliability.faults.harness import ROOT, SEED, SEED_ENV
from tests.reliability.pg_instance import PgInstance


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        # The random schedule of this run (which faults, when, which posts) is replayed by:
        report.sections.append(("fault seed", f"{SEED_ENV}={SEED} pytest '{item.nodeid}'"))
    return report


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Logs of the run under .stack/reliability/ (pytest's tmp dirs are pruned by other sessions
    while a long run is still going); the uploaded media the sandbox kept is removed afterwards."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = ROOT / ".stack" / "reliability" / f"{stamp}-{request.node.name[:40]}-{SEED}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path / "pipeline" / "sandbox-data", ignore_errors=True)


@pytest_asyncio.fixture
async def dedicated_servers() -> AsyncIterator[tuple[KafkaInstance, PgInstance]]:
    """A Kafka broker and a PostgreSQL of the run's own, which it may stop and crash."""
    with tempfile.TemporaryDirectory(prefix="tiktok-kafka-") as kafka_dir:
        async with KafkaInstance(Path(kafka_dir)) as kafka, PgInstance() as pg:
            yield kafka, pg
