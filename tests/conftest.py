"""Test harness: real Kafka, PostgreSQL and S3 for every test, isolated per test.

The session fixture ``stack`` finds the servers once (see docs/CONVENTIONS.md):

1. the environment, when KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and S3_ENDPOINT_URL are set
   (S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY / S3_REGION optional, local defaults);
2. else testcontainers, when a Docker engine answers;
3. else the project's own stack: ``scripts/stack/stack.sh up`` (idempotent), then ``.stack/env``.

``TEST_STACK=env|docker|local`` forces one of them.

Per-test isolation (function fixtures): ``database_url`` (a fresh database, dropped afterwards),
``topic_prefix`` (unique ``t<hex>.``; the topics created under it are deleted afterwards),
``s3_bucket`` (a fresh bucket, emptied and deleted afterwards).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from common.s3 import ObjectStore

ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPT = ROOT / "scripts" / "stack" / "stack.sh"
STACK_ENV_FILE = ROOT / ".stack" / "env"

# Local defaults (docs/CONVENTIONS.md) for what the environment may leave out.
DEFAULT_S3_ACCESS_KEY_ID = "tiktok-local"
DEFAULT_S3_SECRET_ACCESS_KEY = "tiktok-local-secret"
DEFAULT_S3_REGION = "us-east-1"
MEDIA_BUCKET = "media"

_REQUIRED_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "S3_ENDPOINT_URL")

# The services built in this process (tests/auth, tests/publish harnesses) read KAFKA_MANAGE_TOPICS
# from os.environ: on the tests' stack they create their topics, as with the stack's env file (an env
# file written before the variable existed lacks it). A test that wants otherwise sets it explicitly.
os.environ.setdefault("KAFKA_MANAGE_TOPICS", "true")


# The TikTok sandbox fixtures (`sandbox`, `sandbox_config`) come from the sandbox package.
pytest_plugins = ["tiktok_sandbox.testing"]


@dataclass(frozen=True)
class StackEndpoints:
    """Where the servers of this test session are."""

    kafka_bootstrap: str
    database_url: str
    s3_endpoint_url: str
    s3_access_key_id: str
    s3_secret_access_key: str
    s3_region: str
    source: str = "env"  # env | docker | local: how they were found

    def env(self) -> dict[str, str]:
        """The conventional environment variables (for settings objects and subprocesses)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "S3_ENDPOINT_URL": self.s3_endpoint_url,
            "S3_ACCESS_KEY_ID": self.s3_access_key_id,
            "S3_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "S3_REGION": self.s3_region,
            # The local stack lets the services create their topics (production: create-topics).
            "KAFKA_MANAGE_TOPICS": "true",
        }


def _from_mapping(env: dict[str, str], source: str) -> StackEndpoints:
    return StackEndpoints(
        kafka_bootstrap=env["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=env["DATABASE_URL"],
        s3_endpoint_url=env["S3_ENDPOINT_URL"],
        s3_access_key_id=env.get("S3_ACCESS_KEY_ID", DEFAULT_S3_ACCESS_KEY_ID),
        s3_secret_access_key=env.get("S3_SECRET_ACCESS_KEY", DEFAULT_S3_SECRET_ACCESS_KEY),
        s3_region=env.get("S3_REGION", DEFAULT_S3_REGION),
        source=source,
    )


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=5,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def _parse_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if sep:
            env[name.strip()] = value.strip().strip("'\"")
    return env


def _local_stack() -> StackEndpoints:
    result = subprocess.run(
        [str(STACK_SCRIPT), "up"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        # Readiness probes run with this interpreter (it has aiokafka, asyncpg, botocore).
        env={**os.environ, "STACK_PYTHON": os.environ.get("STACK_PYTHON", sys.executable)},
    )
    if result.returncode != 0:
        pytest.fail(
            f"could not start the local stack ({STACK_SCRIPT} up exited {result.returncode}):\n"
            f"{result.stderr}\n{result.stdout}",
            pytrace=False,
        )
    return _from_mapping(_parse_env_file(STACK_ENV_FILE), "local")


def _create_bucket_sync(endpoints: StackEndpoints, bucket: str) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoints.s3_endpoint_url,
        aws_access_key_id=endpoints.s3_access_key_id,
        aws_secret_access_key=endpoints.s3_secret_access_key,
        region_name=endpoints.s3_region,
    )
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        client.close()


def _docker_stack(stack: ExitStack) -> StackEndpoints:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.minio import MinioContainer
        from testcontainers.community.postgres import PostgresContainer

    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    postgres = PostgresContainer(
        "postgres:15", username="tiktok", password="tiktok", dbname="tiktok", driver=None
    )
    minio = MinioContainer(access_key=DEFAULT_S3_ACCESS_KEY_ID, secret_key=DEFAULT_S3_SECRET_ACCESS_KEY)
    for container in (kafka, postgres, minio):
        container.start()
        stack.callback(container.stop)
    endpoints = StackEndpoints(
        kafka_bootstrap=kafka.get_bootstrap_server(),
        database_url=postgres.get_connection_url(),
        s3_endpoint_url=f"http://{minio.get_config()['endpoint']}",
        s3_access_key_id=DEFAULT_S3_ACCESS_KEY_ID,
        s3_secret_access_key=DEFAULT_S3_SECRET_ACCESS_KEY,
        s3_region=DEFAULT_S3_REGION,
        source="docker",
    )
    _create_bucket_sync(endpoints, MEDIA_BUCKET)
    return endpoints


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    """The servers for this session: environment, else testcontainers, else the local stack."""
    mode = os.environ.get("TEST_STACK", "auto")
    if mode not in {"auto", "env", "docker", "local"}:
        pytest.fail(f"TEST_STACK must be auto, env, docker or local, not {mode!r}", pytrace=False)
    present = [name for name in _REQUIRED_ENV if os.environ.get(name)]
    with ExitStack() as cleanup:
        if mode == "env" or (mode == "auto" and present):
            missing = [name for name in _REQUIRED_ENV if name not in present]
            if missing:
                pytest.fail(
                    f"{', '.join(present) or 'TEST_STACK=env'} set but {', '.join(missing)} missing: "
                    "set all of them (e.g. `. .stack/env`) or none",
                    pytrace=False,
                )
            yield _from_mapping(dict(os.environ), "env")
        elif mode == "docker" or (mode == "auto" and _docker_answers()):
            yield _docker_stack(cleanup)
        else:
            yield _local_stack()


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_test_database(admin_url: str) -> str:
    """Create an empty database ``t_<hex>`` through ``admin_url``; return its URL."""
    import asyncpg

    name = _unique("t_")
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return _with_database(admin_url, name)


async def drop_test_database(admin_url: str, database_url: str) -> None:
    """Drop a database made by ``create_test_database``, even with connections still open."""
    import asyncpg

    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(stack: StackEndpoints) -> AsyncIterator[str]:
    """A fresh, empty database ``t_<hex>`` for this test only; dropped (WITH FORCE) afterwards."""
    url = await create_test_database(stack.database_url)
    try:
        yield url
    finally:
        await drop_test_database(stack.database_url, url)


async def _delete_topics_with_prefix(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        topics = [topic for topic in await admin.list_topics() if topic.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics, timeout_ms=10000)
    finally:
        await admin.close()


@pytest.fixture
async def topic_prefix(stack: StackEndpoints) -> AsyncIterator[str]:
    """A unique topic prefix ``t<hex>.`` for this test; topics created under it are deleted afterwards."""
    prefix = _unique("t") + "."
    yield prefix
    try:
        await asyncio.wait_for(_delete_topics_with_prefix(stack.kafka_bootstrap, prefix), 30)
    except Exception as exc:  # cleanup is best effort: the prefix is unique anyway
        print(f"topic_prefix cleanup of {prefix}* failed: {exc!r}")


def s3_client(stack: StackEndpoints) -> Any:
    """An aiobotocore S3 client context manager for the stack: ``async with s3_client(stack) as s3``."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3",
        endpoint_url=stack.s3_endpoint_url,
        aws_access_key_id=stack.s3_access_key_id,
        aws_secret_access_key=stack.s3_secret_access_key,
        region_name=stack.s3_region,
        config=AioConfig(s3={"addressing_style": "path"}),
    )


def object_store(stack: StackEndpoints, endpoint_url: str | None = None) -> ObjectStore:
    """The project's ``ObjectStore`` with the stack's credentials (``endpoint_url``: reach S3 through
    something else, a proxy say); not started: ``async with object_store(stack) as store``."""
    from common.s3 import ObjectStore

    return ObjectStore(
        endpoint_url=endpoint_url or stack.s3_endpoint_url,
        access_key_id=stack.s3_access_key_id,
        secret_access_key=stack.s3_secret_access_key,
        region=stack.s3_region,
    )


async def _empty_and_delete_bucket(s3: Any, bucket: str) -> None:
    uploads = await s3.list_multipart_uploads(Bucket=bucket)
    for upload in uploads.get("Uploads", []):
        await s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            await s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    await s3.delete_bucket(Bucket=bucket)


@pytest.fixture
async def s3_bucket(stack: StackEndpoints) -> AsyncIterator[str]:
    """A fresh bucket ``t-<hex>`` for this test; its objects and the bucket are deleted afterwards."""
    bucket = _unique("t-")
    async with s3_client(stack) as s3:
        await s3.create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        async with s3_client(stack) as s3:
            await _empty_and_delete_bucket(s3, bucket)


@pytest.fixture
def spans() -> Any:
    """Finished spans of this test (the SDK's in-memory exporter; see tests/spans.py)."""
    from tests.spans import in_memory_spans

    return in_memory_spans()
