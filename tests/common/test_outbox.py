"""The transactional outbox against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from opentelemetry import trace

from common.backoff import Backoff
from common.db import apply_migrations, create_pool
from common.errors import InvalidInput
from common.kafka import Consumer, Producer, TopicSpec, ensure_topics
from common.outbox import (
    OutboxError,
    OutboxRecord,
    change_and_enqueue,
    enqueue,
    enqueue_many,
    outbox_ddl,
    outbox_trace_ddl,
)
from common.outbox_relay import OutboxRelay
from common.tasks import BackgroundLoops
from common.tracing import context_from_carrier, current_carrier, extract_context, tracer
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
    (migrations / "0002_outbox_trace_context.sql").write_text(outbox_trace_ddl(SCHEMA))
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
        stopping = asyncio.Event()
        tg.create_task(relay.run(stopping))
        await wait_for(lambda: relay.is_active, description="relay active")

        await _enqueue_committed(pool, topic, batches[0])
        with pytest.raises(Rollback):
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(conn, SCHEMA, topic, b"a", b"a:rolled-back")
                raise Rollback
        await _enqueue_committed(pool, topic, batches[1])
        await _enqueue_committed(pool, topic, batches[2])

        await wait_for_value(relay.backlog, 0, timeout=20, description="outbox drained")
        stopping.set()

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


async def test_a_guarded_change_and_its_event_go_in_one_statement_or_not_at_all(
    pool, bootstrap, topic
) -> None:
    await pool.execute(f"CREATE TABLE {SCHEMA}.items (id text PRIMARY KEY, version int NOT NULL, note text)")
    await pool.execute(f"INSERT INTO {SCHEMA}.items VALUES ('x', 1, 'first')")
    change = (
        f"UPDATE {SCHEMA}.items SET version = $2 + 1, note = $3 WHERE id = $1 AND version = $2 RETURNING *"
    )

    async def item() -> tuple[int, str]:
        row = await pool.fetchrow(f"SELECT version, note FROM {SCHEMA}.items WHERE id = 'x'")
        return row["version"], row["note"]

    async with Producer(bootstrap) as producer, asyncio.TaskGroup() as tg:
        # A long poll interval: only the notification sent with the change can wake the relay in time.
        relay = OutboxRelay(pool, SCHEMA, producer, poll_interval=60)
        stopping = asyncio.Event()
        tg.create_task(relay.run(stopping))
        await wait_for(lambda: relay.is_active, description="relay active")

        changed = await change_and_enqueue(
            pool, SCHEMA, change, ["x", 1, "second"], OutboxRecord(topic, "x", b"x:v2", [("v", b"2")])
        )
        assert (changed["version"], changed["note"]) == (2, "second")
        # Built from a stale version: no change, no event.
        stale = await change_and_enqueue(
            pool, SCHEMA, change, ["x", 1, "stale"], OutboxRecord(topic, "x", b"x:stale")
        )
        assert stale is None
        # An event over the limit is refused before anything changes.
        with pytest.raises(InvalidInput, match="exceeds the 100-byte limit"):
            await change_and_enqueue(
                pool,
                SCHEMA,
                change,
                ["x", 2, "big"],
                OutboxRecord(topic, "x", b"x" * 200),
                max_record_bytes=100,
            )
        assert await item() == (2, "second")
        changed = await change_and_enqueue(
            pool, SCHEMA, change, ["x", 2, "third"], OutboxRecord(topic, "x", b"x:v3")
        )
        assert changed["version"] == 3

        await wait_for_value(relay.backlog, 0, timeout=20, description="outbox drained")
        stopping.set()

    records = await _consume(bootstrap, topic, 2)
    assert [(r.key, r.value) for r in records] == [(b"x", b"x:v2"), (b"x", b"x:v3")]
    assert dict(records[0].headers)["v"] == b"2"
    assert await item() == (3, "third")


async def test_rows_wait_while_kafka_is_unreachable_then_go_in_order(pool, bootstrap, topic) -> None:
    values = [f"k:{i}".encode() for i in range(5)]
    await _enqueue_committed(pool, topic, values)

    unreachable = Producer(f"127.0.0.1:{closed_loopback_port()}", request_timeout_ms=1000)
    try:
        relay = OutboxRelay(pool, SCHEMA, unreachable, backoff=Backoff(initial=0.05, maximum=0.2))
        stopping = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(relay.run(stopping))
            await wait_for(lambda: relay.failures >= 3, description="relay retried against dead Kafka")
            assert await relay.backlog() == len(values)
            stopping.set()
        assert "Kafka" in (relay.last_error or "")
    finally:
        await unreachable.stop()
    assert await relay.backlog() == len(values)

    async with Producer(bootstrap) as working, asyncio.TaskGroup() as tg:
        relay = OutboxRelay(pool, SCHEMA, working)
        stopping = asyncio.Event()
        tg.create_task(relay.run(stopping))
        await wait_for_value(relay.backlog, 0, timeout=20, description="outbox drained")
        assert relay.health() is None
        stopping.set()
    assert [r.value for r in await _consume(bootstrap, topic, len(values))] == values


async def test_a_relay_that_keeps_failing_makes_readiness_false_naming_it(pool, topic) -> None:
    """Readiness reads the relay's own health: failing to deliver again and again is not ready."""
    await _enqueue_committed(pool, topic, [b"k:1"])
    unreachable = Producer(f"127.0.0.1:{closed_loopback_port()}", request_timeout_ms=1000)
    relay = OutboxRelay(pool, SCHEMA, unreachable, backoff=Backoff(initial=0.05, maximum=0.2))
    loops = BackgroundLoops(shutdown_deadline=5)
    loops.add("outbox-relay", relay.run, health=relay.health)
    try:
        async with loops:
            await loops.check()  # one failure is no verdict yet
            await wait_for(lambda: relay.failures_in_a_row >= 3, description="relay failed three times")
            named = r"outbox-relay: \d+ failures in a row, last: KafkaUnavailable"
            with pytest.raises(RuntimeError, match=named):
                await loops.check()
    finally:
        await unreachable.stop()


async def test_one_replica_relays_and_another_takes_over(pool, bootstrap, topic) -> None:
    async with Producer(bootstrap) as producer, asyncio.TaskGroup() as tg:
        first = OutboxRelay(pool, SCHEMA, producer, lock_retry_interval=0.1)
        second = OutboxRelay(pool, SCHEMA, producer, lock_retry_interval=0.1)
        first_stopping, second_stopping = asyncio.Event(), asyncio.Event()
        tg.create_task(first.run(first_stopping))
        await wait_for(lambda: first.is_active, description="first relay active")
        tg.create_task(second.run(second_stopping))
        await _enqueue_committed(pool, topic, [b"k:1"])
        await wait_for_value(first.backlog, 0, description="relayed by the first")
        assert not second.is_active

        first_stopping.set()
        await wait_for(lambda: second.is_active, description="second relay took over")
        await _enqueue_committed(pool, topic, [b"k:2"])
        await wait_for_value(second.backlog, 0, description="relayed by the second")
        second_stopping.set()
    assert (first.relayed, second.relayed) == (1, 1)
    assert [r.value for r in await _consume(bootstrap, topic, 2)] == [b"k:1", b"k:2"]


async def test_relay_reconnects_after_its_database_session_is_killed(pool, bootstrap, topic) -> None:
    async with Producer(bootstrap) as producer, asyncio.TaskGroup() as tg:
        relay = OutboxRelay(pool, SCHEMA, producer, backoff=Backoff(initial=0.05, maximum=30.0))
        stopping = asyncio.Event()
        tg.create_task(relay.run(stopping))
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
        stopping.set()
    assert [r.value for r in await _consume(bootstrap, topic, 2)] == [b"k:before", b"k:after"]


async def test_an_event_continues_the_trace_of_the_transaction_that_enqueued_it(
    pool, bootstrap, topic, spans
) -> None:
    """The trace context is stored with the row and reaches Kafka in the record's W3C headers."""
    with tracer("test").start_as_current_span("change state") as change:
        await _enqueue_committed(pool, topic, [b"k:traced"])
    await _enqueue_committed(pool, topic, [b"k:untraced"])
    async with Producer(bootstrap) as producer, asyncio.TaskGroup() as tg:
        relay = OutboxRelay(pool, SCHEMA, producer)
        stopping = asyncio.Event()
        tg.create_task(relay.run(stopping))
        await wait_for_value(relay.backlog, 0, timeout=20, description="outbox drained")
        stopping.set()

    traced, untraced = await _consume(bootstrap, topic, 2)
    trace_id = change.get_span_context().trace_id
    parent = trace.get_current_span(extract_context(traced.headers)).get_span_context()
    assert parent.trace_id == trace_id
    assert dict(traced.headers)["type"] == b"test.event"  # the event's own headers are kept
    publish = next(s for s in spans.get_finished_spans() if s.name == f"{topic} publish")
    assert publish.context.span_id == parent.span_id
    assert publish.parent is not None and publish.parent.span_id == change.get_span_context().span_id
    assert "traceparent" not in dict(untraced.headers)


async def test_enqueue_many_stores_each_rows_own_trace_context(pool, topic, spans) -> None:
    """A batch of rows from different requests keeps each row's trace; a row without one takes the
    trace current at the call, as ``enqueue`` does."""
    with tracer("test").start_as_current_span("request a") as a:
        carrier_a = current_carrier()
    with tracer("test").start_as_current_span("batch") as batch:
        async with pool.acquire() as conn, conn.transaction():
            await enqueue_many(
                conn,
                SCHEMA,
                [OutboxRecord(topic, b"k", b"a", (), carrier_a), OutboxRecord(topic, b"k", b"current")],
            )
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT value, trace_context FROM {SCHEMA}.outbox ORDER BY id")
    assert [bytes(r["value"]) for r in rows] == [b"a", b"current"]
    stored = [trace.get_current_span(context_from_carrier(json.loads(r["trace_context"]))) for r in rows]
    assert stored[0].get_span_context().span_id == a.get_span_context().span_id
    assert stored[1].get_span_context().span_id == batch.get_span_context().span_id
