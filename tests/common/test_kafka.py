"""common.kafka against the real broker: topics, the idempotent producer, manual commits."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest

from common.kafka import (
    DAY_MS,
    TOPIC_ACCOUNTS,
    TOPIC_POST_REQUESTED,
    Consumer,
    Delivered,
    KafkaPublishFailed,
    KafkaUnavailable,
    OutgoingMessage,
    Producer,
    TopicAction,
    TopicPartition,
    TopicSpec,
    ensure_topics,
    standard_topics,
)
from tests.common import closed_loopback_port, committed, fetch_topic_config, send_all

pytestmark = pytest.mark.stack


@pytest.fixture
def bootstrap(stack) -> str:
    return str(stack.kafka_bootstrap)


async def _topic(bootstrap: str, prefix: str, name: str, partitions: int = 1) -> str:
    spec = TopicSpec(f"{prefix}{name}", partitions=partitions)
    await ensure_topics(bootstrap, [spec])
    return spec.name


async def _drain(consumer: Consumer, want: int, timeout: float = 20.0) -> list:
    """Records in arrival order until ``want`` have come (fails on timeout)."""
    got: list = []
    async with asyncio.timeout(timeout):
        while len(got) < want:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
    return got


def test_standard_topics_follow_the_design() -> None:
    topics = standard_topics("dev.", partitions=3)
    assert len(topics) == 8
    assert topics[TOPIC_POST_REQUESTED].name == "dev.tiktok.post.requested"
    assert topics[TOPIC_POST_REQUESTED].config == {
        "cleanup.policy": "delete",
        "retention.ms": str(7 * DAY_MS),
    }
    assert topics[TOPIC_ACCOUNTS].config == {"cleanup.policy": "compact"}
    assert topics["tiktok.access-tokens"].config == {"cleanup.policy": "compact"}
    assert topics["tiktok.token.refresh-requested"].config["retention.ms"] == str(DAY_MS)
    assert topics["tiktok.post.requested.dlq"].config["retention.ms"] == str(30 * DAY_MS)
    assert topics["tiktok.post.metrics"].config == {
        "cleanup.policy": "delete",
        "retention.ms": str(30 * DAY_MS),
    }
    assert topics["tiktok.account.stats"].config == {"cleanup.policy": "compact"}
    assert {t.partitions for t in topics.values()} == {3}


async def test_ensure_topics_creates_compacted_and_retention_topics_once(bootstrap, topic_prefix) -> None:
    specs = standard_topics(topic_prefix, partitions=2).values()

    first = await ensure_topics(bootstrap, specs)
    second = await ensure_topics(bootstrap, specs)

    assert set(first.values()) == {TopicAction.CREATED}
    assert set(second.values()) == {TopicAction.UNCHANGED}
    accounts = await fetch_topic_config(bootstrap, f"{topic_prefix}{TOPIC_ACCOUNTS}")
    assert accounts["cleanup.policy"] == "compact"
    requested = await fetch_topic_config(bootstrap, f"{topic_prefix}{TOPIC_POST_REQUESTED}")
    assert requested["cleanup.policy"] == "delete"
    assert requested["retention.ms"] == str(7 * DAY_MS)


async def test_ensure_topics_alters_the_config_of_an_existing_topic(bootstrap, topic_prefix) -> None:
    name = f"{topic_prefix}drift"
    await ensure_topics(bootstrap, [TopicSpec(name, 1, config={"retention.ms": str(DAY_MS)})])

    result = await ensure_topics(bootstrap, [TopicSpec(name, 1, config={"retention.ms": str(2 * DAY_MS)})])

    assert result == {name: TopicAction.ALTERED}
    assert (await fetch_topic_config(bootstrap, name))["retention.ms"] == str(2 * DAY_MS)


async def test_consumer_group_resumes_after_the_last_committed_record(bootstrap, topic_prefix) -> None:
    topic = await _topic(bootstrap, topic_prefix, "resume", partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    n, k = 20, 7
    async with Producer(bootstrap) as producer:
        await send_all(producer, [OutgoingMessage(topic, b"acct-1", f"v{i}".encode()) for i in range(n)])

    async with Consumer(bootstrap, [topic], group_id=group) as a:
        seen_by_a = await _drain(a, n)
        for record in seen_by_a[:k]:  # "process" the first k only, committing each after processing
            await a.commit(record)
    assert [r.value for r in seen_by_a] == [f"v{i}".encode() for i in range(n)]

    async with Consumer(bootstrap, [topic], group_id=group) as b:
        assert await committed(b, TopicPartition(topic, 0)) == k
        seen_by_b = await _drain(b, n - k)
        assert await b.getmany(timeout_ms=1000) == {}  # nothing beyond, nothing repeated
    assert [r.offset for r in seen_by_b] == list(range(k, n))
    assert [r.value for r in seen_by_b] == [f"v{i}".encode() for i in range(k, n)]


async def test_consumer_polls_and_calls_the_rebalance_hook(bootstrap, topic_prefix) -> None:
    topic = await _topic(bootstrap, topic_prefix, "iter", partitions=2)
    calls: list[tuple[str, set[TopicPartition]]] = []

    class Hook:
        async def on_revoked(self, partitions: set[TopicPartition]) -> None:
            calls.append(("revoked", partitions))

        async def on_assigned(self, partitions: set[TopicPartition]) -> None:
            calls.append(("assigned", partitions))

    async with Producer(bootstrap) as producer:
        await producer.send(topic, "k", b"hello", [("type", b"greeting")])
    async with Consumer(bootstrap, [topic], group_id=f"g-{uuid.uuid4().hex[:8]}", rebalance_hook=Hook()) as c:
        async with asyncio.timeout(20):
            polled: list = []
            while not polled:
                polled = [r for records in (await c.getmany(timeout_ms=500)).values() for r in records]
        record = polled[0]
        await c.commit(record)
    assert (record.key, record.value, list(record.headers)) == (b"k", b"hello", [("type", b"greeting")])
    assert ("assigned", {TopicPartition(topic, 0), TopicPartition(topic, 1)}) in calls


async def test_idempotent_producer_batch_lands_exactly_once_in_order(bootstrap, topic_prefix) -> None:
    topic = await _topic(bootstrap, topic_prefix, "batch", partitions=3)
    keys = [f"acct-{i}".encode() for i in range(5)]
    messages = [
        OutgoingMessage(topic, keys[i % 5], f"{i % 5}:{i}".encode(), [("seq", str(i).encode())])
        for i in range(300)
    ]

    async with Producer(bootstrap, max_batch_size=4096) as producer:  # small batches: many per partition
        assert producer.config["enable_idempotence"] is True
        assert producer.config["acks"] == "all"
        delivered = await send_all(producer, messages)
        # The broker handed out a producer id: it runs the idempotent protocol, not just our flag.
        assert producer.raw._txn_manager is not None
        assert producer.raw._txn_manager.producer_id >= 0

    assert len(delivered) == len(messages)
    assert all(isinstance(d, Delivered) for d in delivered)
    async with Consumer(bootstrap, [topic], group_id=f"g-{uuid.uuid4().hex[:8]}") as consumer:
        records = await _drain(consumer, len(messages))
        assert await consumer.getmany(timeout_ms=1000) == {}

    assert sorted(r.value for r in records) == sorted(m.value for m in messages)  # no loss, no duplicate
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for r in records:
        by_key[r.key].append(r.value)
    for key in keys:
        assert by_key[key] == [m.value for m in messages if m.key == key]  # per-key order kept
    where = {(r.partition, r.offset): r.value for r in records}
    assert [where[(d.partition, d.offset)] for d in delivered] == [m.value for m in messages]


async def test_oversized_record_is_refused_without_blocking_other_partitions(bootstrap, topic_prefix) -> None:
    topic = await _topic(bootstrap, topic_prefix, "big", partitions=1)
    async with Producer(bootstrap, max_request_size=10_000) as producer:
        results = await producer.send_batch_settled(
            [
                OutgoingMessage(topic, b"a", b"small"),
                OutgoingMessage(topic, b"a", b"x" * 20_000),
                OutgoingMessage(topic, b"a", b"after"),
            ]
        )
    assert isinstance(results[0], Delivered)
    assert isinstance(results[1], KafkaPublishFailed)
    assert results[1].retriable is False
    assert results[2] is results[1]  # not sent: it would have overtaken the refused record


async def test_producer_start_against_a_closed_port_is_retriable_unavailable() -> None:
    producer = Producer(f"127.0.0.1:{closed_loopback_port()}", request_timeout_ms=2000)
    with pytest.raises(KafkaUnavailable) as caught:
        await producer.start()
    assert caught.value.retriable is True
    assert producer.started is False
    await producer.stop()
