"""The transactional outbox against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from common.db import apply_migrations, create_pool
from common.kafka import Consumer, Producer, TopicSpec, ensure_topics
from common.outbox import OutboxError, OutboxRelay, enqueue, outbox_ddl
from tests.common import closed_loopback_port
from tests.waiting import wait_for, wait_for_value

pytestmark = pytest.mark.stack

SCHEMA = "app"


class Rollback(Exception):
    pass


@pytest.fixture
def bootstrap(stack) -> str:
    return str(stack.kafka_bootstrap)


@pytest.fixture
async def pool(database_url: str, tmp_path: Path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_outbox.sql").write_text(outbox_ddl(SCHEMA))
    async with create_pool(database_url, min_size=1, max_size=6) as pool:
        await apply_migrations(pool, SCHEMA, migrations)
        yield pool


@pytest.fixture
async def topic(bootstrap: str, topic_prefix: str) -> str:
    name = f"{topic_prefix}events"
    await ensure_topics(bootstrap, [TopicSpec(name, partitions=1)])
    return name


async def _enqueue_committed(pool, topic: str, values: list[bytes]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for v in values:
            await enqueue(conn, SCHEMA, topic, v.split(b":")[0], v, [("type", b"test.event"), ("v", v)])


async def _consume(bootstrap: str, topic: str, want: int, timeout: float = 30.0) -> list:
    async with Consumer(bootstrap, [topic], group_id=f"g-{uuid.uuid4().hex[:8]}") as consumer:
        got: list = []
        async with asyncio.timeout(timeout):
            while len(got) < want:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(records)
        extra = await consumer.getmany(timeout_ms=1000)
    assert extra == {}, "more records than were committed"
    return got


async def test_committed_events_arrive_in_order_and_rolled_back_ones_never(pool, bootstrap, topic) -> None:
    batches = [[f"{k}:{b}-{i}".encode() for i, k in enumerate("abcab")] for b in range(3)]
    async with Producer(bootstrap) as producer, asyncio.TaskGroup() as tg:
        # A long poll interval: only the NOTIFY sent at commit can wake the relay in time.
        relay = OutboxRelay(pool, SCHEMA, producer, poll_interval=60)
        tg.create_task(relay.run())
        await wait_for(lambda: relay.is_active, description="relay active")

        await _enqueue_committed(pool, topic, batches[0])
        with pytest.raises(Rollback):
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(conn, SCHEMA, topic, b"a", b"a:rolled-back")
                raise Rollback
        await _enqueue_committed(pool, topic, batches[1])
        await _enqueue_committed(pool, topic, batches[2])

        await wait_for_value(relay.backlog, 0, timeout=20, description="outbox drained")
        relay.stop()

    expected = [v for batch in batches for v in batch]
    records = await _consume(bootstrap, topic, len(expected))
    assert [r.value for r in records] == expected
    assert [r.key for r in records] == [v.split(b":")[0] for v in expected]
    assert [dict(r.headers)["v"] for r in records] == expected
    assert relay.relayed == len(expected)


async def test_enqueue_outside_a_transaction_is_refused(pool, topic) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(OutboxError, match="inside the caller's transaction"):
            await enqueue(conn, SCHEMA, topic, b"k", b"v")
    assert await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox") == 0


async def test_rows_wait_while_kafka_is_unreachable_then_go_in_order(pool, bootstrap, topic) -> None:
    values = [f"k:{i}".encode() for i in range(5)]
    await _enqueue_committed(pool, topic, values)

    unreachable = Producer(f"127.0.0.1:{closed_loopback_port()}", request_timeout_ms=1000)
    try:
        relay = OutboxRelay(pool, SCHEMA, unreachable, backoff_initial=0.05, backoff_max=0.2)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(relay.run())
            await wait_for(lambda: relay.failures >= 3, description="relay retried against dead Kafka")
            assert await relay.backlog() == len(values)
            relay.stop()
        assert "Kafka" in (relay.last_error or "")
    finally:
        await unreachable.stop()
    assert await relay.backlog() == len(values)

    async with Producer(bootstrap) as working, asyncio.TaskGroup() as tg:
        relay = OutboxRelay(pool, SCHEMA, working)
        tg.create_task(relay.run())
        await wait_for_value(relay.backlog, 0, timeout=20, description="outbox drained")
        relay.stop()
    assert [r.value for r in await _consume(bootstrap, topic, len(values))] == values


async def test_one_replica_relays_and_another_takes_over(pool, bootstrap, topic) -> None:
    async with Producer(bootstrap) as producer, asyncio.TaskGroup() as tg:
        first = OutboxRelay(pool, SCHEMA, producer, lock_retry_interval=0.1)
        second = OutboxRelay(pool, SCHEMA, producer, lock_retry_interval=0.1)
        tg.create_task(first.run())
        await wait_for(lambda: first.is_active, description="first relay active")
        tg.create_task(second.run())
        await _enqueue_committed(pool, topic, [b"k:1"])
        await wait_for_value(first.backlog, 0, description="relayed by the first")
        assert not second.is_active

        first.stop()
        await wait_for(lambda: second.is_active, description="second relay took over")
        await _enqueue_committed(pool, topic, [b"k:2"])
        await wait_for_value(second.backlog, 0, description="relayed by the second")
        second.stop()
    assert (first.relayed, second.relayed) == (1, 1)
    assert [r.value for r in await _consume(bootstrap, topic, 2)] == [b"k:1", b"k:2"]


async def test_relay_reconnects_after_its_database_session_is_killed(pool, bootstrap, topic) -> None:
    async with Producer(bootstrap) as producer, asyncio.TaskGroup() as tg:
        relay = OutboxRelay(pool, SCHEMA, producer, backoff_initial=0.05)
        tg.create_task(relay.run())
        await wait_for(lambda: relay.is_active, description="relay active")
        await _enqueue_committed(pool, topic, [b"k:before"])
        await wait_for_value(relay.backlog, 0, description="first event relayed")

        # What a PostgreSQL restart looks like to the relay: its session (and the lock) disappears.
        killed = await pool.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
        )
        assert killed is True
        await wait_for(lambda: relay.failures >= 1, description="relay noticed the lost session")
        await _enqueue_committed(pool, topic, [b"k:after"])
        await wait_for_value(relay.backlog, 0, timeout=20, description="relayed after reconnect")
        relay.stop()
    assert [r.value for r in await _consume(bootstrap, topic, 2)] == [b"k:before", b"k:after"]
