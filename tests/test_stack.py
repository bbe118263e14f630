"""The harness itself: the servers answer and the per-test isolation fixtures really isolate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from tests.conftest import (
    MEDIA_BUCKET,
    StackEndpoints,
    create_test_database,
    drop_test_database,
    s3_client,
)
from tests.waiting import WaitTimeout, wait_for, wait_for_value

pytestmark = pytest.mark.stack


async def test_kafka_metadata_and_a_round_trip(stack: StackEndpoints, topic_prefix: str) -> None:
    topic = f"{topic_prefix}harness"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        async def listed() -> bool:
            return topic in await admin.list_topics()

        await wait_for(listed, description=f"topic {topic} in metadata")
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, sent.partition)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        record = await consumer.getone()
        assert (record.key, record.value) == (b"k", b"hello")
    finally:
        await consumer.stop()


async def test_topic_prefixes_are_unique(topic_prefix: str) -> None:
    assert topic_prefix.startswith("t")
    assert topic_prefix.endswith(".")
    assert len(topic_prefix) > 10


async def _database_exists(stack: StackEndpoints, name: str) -> bool:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name))
    finally:
        await conn.close()


@pytest.fixture
async def dropped_afterwards(stack: StackEndpoints) -> AsyncIterator[list[str]]:
    """Set up before ``database_url`` (listed first), so torn down after it: checks the drop."""
    names: list[str] = []
    yield names
    for name in names:
        assert not await _database_exists(stack, name), f"database {name} was not dropped"


async def test_postgres_select_1_in_own_database(
    dropped_afterwards: list[str], database_url: str, stack: StackEndpoints
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute("CREATE TABLE scratch (id int PRIMARY KEY)")
    finally:
        await conn.close()
    assert name.startswith("t_")
    assert urlsplit(stack.database_url).path != f"/{name}"
    assert await _database_exists(stack, name)
    dropped_afterwards.append(name)


async def test_drop_works_with_connections_still_open(stack: StackEndpoints) -> None:
    url = await create_test_database(stack.database_url)
    name = urlsplit(url).path.lstrip("/")
    leaked = await asyncpg.connect(url)
    try:
        assert await _database_exists(stack, name)
        await drop_test_database(stack.database_url, url)
        assert not await _database_exists(stack, name)
    finally:
        if not leaked.is_closed():
            leaked.terminate()


async def test_s3_put_get_in_own_bucket(stack: StackEndpoints, s3_bucket: str) -> None:
    assert s3_bucket != MEDIA_BUCKET
    async with s3_client(stack) as s3:
        await s3.put_object(
            Bucket=s3_bucket, Key="videos/a.mp4", Body=b"\x00\x01video", ContentType="video/mp4"
        )
        response = await s3.get_object(Bucket=s3_bucket, Key="videos/a.mp4")
        async with response["Body"] as body:
            assert await body.read() == b"\x00\x01video"
        head = await s3.head_object(Bucket=s3_bucket, Key="videos/a.mp4")
        assert head["ContentLength"] == 7


async def test_media_bucket_exists(stack: StackEndpoints) -> None:
    async with s3_client(stack) as s3:
        await s3.head_bucket(Bucket=MEDIA_BUCKET)


async def test_wait_for_returns_the_truthy_value_and_times_out_clearly() -> None:
    calls = iter([None, 0, "ready"])
    assert await wait_for(lambda: next(calls), timeout=5, interval=0.01) == "ready"

    async def counter_factory() -> Callable[[], Awaitable[int]]:
        counter = {"n": 0}

        async def bump() -> int:
            counter["n"] += 1
            return counter["n"]

        return bump

    bump = await counter_factory()
    assert await wait_for_value(bump, 3, timeout=5, interval=0.01) == 3
    assert await wait_for_value(bump, lambda n: n > 5, timeout=5, interval=0.01) == 6

    with pytest.raises(WaitTimeout, match="never true"):
        await wait_for(lambda: False, timeout=0.1, interval=0.01, description="never true")
    with pytest.raises(WaitTimeout, match="last value 'no'"):
        await wait_for_value(lambda: "no", "yes", timeout=0.1, interval=0.01)
