"""The one consume loop (common.kafka.ConsumeLoop) against real Kafka: typed events, retries, commits, lag."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from common.backoff import Backoff
from common.errors import DatabaseUnavailable
from common.events import Envelope, EventType, RefreshRequestedData, decode, encode
from common.kafka import (
    ConsumeLoop,
    Consumer,
    ConsumerRecord,
    Decoded,
    Producer,
    TopicPartition,
    TopicSpec,
    Undecodable,
    ensure_topics,
)
from tests.common import committed
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

FAST = Backoff(initial=0.05, maximum=0.2, jitter=0)
Request = Envelope[RefreshRequestedData]


def _decode(record: ConsumerRecord[bytes, bytes]) -> Request:
    return decode(record.value, RefreshRequestedData, expected_type=EventType.refresh_requested)


@pytest.fixture
def bootstrap(stack) -> str:
    return str(stack.kafka_bootstrap)


async def _topic_with(bootstrap: str, prefix: str, values: Sequence[bytes]) -> str:
    spec = TopicSpec(f"{prefix}consume", partitions=1)
    await ensure_topics(bootstrap, [spec])
    async with Producer(bootstrap) as producer:
        for value in values:
            await producer.send(spec.name, "k", value)
    return spec.name


def _request(account_id: str) -> bytes:
    value, _headers = encode(
        EventType.refresh_requested, RefreshRequestedData(account_id=account_id, reason="test")
    )
    return value


def _consumer(bootstrap: str, topic: str, group: str) -> Consumer:
    return Consumer(bootstrap, [topic], group_id=group)


async def _run_until(loop: ConsumeLoop, done: object, description: str) -> None:
    stopping = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(loop.run(stopping))
        try:
            await wait_for(done, timeout=30, description=description)  # type: ignore[arg-type]
        finally:
            stopping.set()


async def test_each_handler_gets_typed_events_retries_transient_failures_and_commits(
    bootstrap, topic_prefix
) -> None:
    values = [_request("acc_1"), b"{not json", _request("acc_2"), _request("acc_3")]
    topic = await _topic_with(bootstrap, topic_prefix, values)
    group = f"g-{uuid.uuid4().hex[:8]}"
    seen: list[tuple[str, int, bytes]] = []
    failures = {"acc_2": 2}  # the database is "away" twice while acc_2 is handled
    lags: list[int] = []

    async def handle(message: Decoded[Request]) -> None:
        account = message.event.data.account_id
        if failures.get(account, 0) > 0:
            failures[account] -= 1
            raise DatabaseUnavailable("connection lost")
        seen.append((account, message.record.offset, message.record.value or b""))

    loop = ConsumeLoop.each(
        "test", _consumer(bootstrap, topic, group), _decode, handle, backoff=FAST,
        on_lag=lambda _t, _p, lag: lags.append(lag),
    )
    await _run_until(loop, lambda: len(seen) == 3 and lags and lags[-1] == 0, "three handled, no lag")

    assert [(a, o) for a, o, _ in seen] == [("acc_1", 0), ("acc_2", 2), ("acc_3", 3)]  # nothing skipped
    assert seen[0][2] == values[0]  # the raw bytes come along
    assert (loop.handled, loop.undecodable) == (4, 1)
    async with _consumer(bootstrap, topic, group) as c:
        assert await committed(c, TopicPartition(topic, 0)) == 4


async def test_batch_handler_gets_bad_records_in_order_with_their_bytes(bootstrap, topic_prefix) -> None:
    topic = await _topic_with(bootstrap, topic_prefix, [_request("acc_1"), b"{not json", _request("acc_2")])
    items: list[Decoded[Request] | Undecodable] = []

    async def handle(batch: Sequence[Decoded[Request] | Undecodable]) -> None:
        items.extend(batch)

    consumer = _consumer(bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}")
    loop = ConsumeLoop.batches("test", consumer, _decode, handle)
    await _run_until(loop, lambda: len(items) == 3, "three records handed over")

    assert [type(i).__name__ for i in items] == ["Decoded", "Undecodable", "Decoded"]
    bad = items[1]
    assert isinstance(bad, Undecodable)
    assert (bad.record.value, bad.error.code) == (b"{not json", "not_json")


async def test_stopping_while_retrying_leaves_the_record_for_the_next_owner(bootstrap, topic_prefix) -> None:
    topic = await _topic_with(bootstrap, topic_prefix, [_request("acc_1"), _request("acc_2")])
    group = f"g-{uuid.uuid4().hex[:8]}"
    attempts: list[str] = []

    async def handle(message: Decoded[Request]) -> None:
        attempts.append(message.event.data.account_id)
        if message.event.data.account_id == "acc_2":
            raise DatabaseUnavailable("still away")

    loop = ConsumeLoop.each("test", _consumer(bootstrap, topic, group), _decode, handle, backoff=FAST)
    await _run_until(loop, lambda: attempts.count("acc_2") >= 3, "acc_2 retried")

    async with _consumer(bootstrap, topic, group) as c:
        assert await committed(c, TopicPartition(topic, 0)) == 1  # acc_1 done, acc_2 comes again


async def test_a_bug_in_the_handler_ends_the_run_without_committing(bootstrap, topic_prefix) -> None:
    topic = await _topic_with(bootstrap, topic_prefix, [_request("acc_1")])
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def handle(_message: Decoded[Request]) -> None:
        raise ValueError("a bug")

    loop = ConsumeLoop.each("test", _consumer(bootstrap, topic, group), _decode, handle, backoff=FAST)
    with pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(loop.run(asyncio.Event()), 30)
    async with _consumer(bootstrap, topic, group) as c:
        assert await committed(c, TopicPartition(topic, 0)) is None


async def test_lag_is_committed_vs_end_offsets_on_a_timer_and_revoked_partitions_are_dropped(
    bootstrap, topic_prefix
) -> None:
    """A stuck handler shows the lag (no batch needs to arrive), and a partition that moves to
    another replica in a rebalance is reported gone (None) by the replica that lost it."""
    spec = TopicSpec(f"{topic_prefix}lag", partitions=2)
    await ensure_topics(bootstrap, [spec])
    async with Producer(bootstrap) as producer:
        for partition_key in ("a", "b", "c", "d", "e", "f"):
            await producer.send(spec.name, partition_key, _request(f"acc_{partition_key}"))
    group = f"g-{uuid.uuid4().hex[:8]}"
    release = asyncio.Event()
    lags_a: dict[int, int | None] = {}
    lags_b: dict[int, int | None] = {}

    async def stuck(_message: Decoded[Request]) -> None:
        await release.wait()

    async def fine(_message: Decoded[Request]) -> None:
        return None

    def observer(into: dict[int, int | None]):  # type: ignore[no-untyped-def]
        return lambda topic, partition, lag: into.__setitem__(partition, lag) if topic == spec.name else None

    a = ConsumeLoop.each(
        "a", _consumer(bootstrap, spec.name, group), _decode, stuck, on_lag=observer(lags_a), lag_interval=0.2
    )
    stopping_a, stopping_b = asyncio.Event(), asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(a.run(stopping_a))
        # Both partitions are A's, and nothing is committed while the handler is stuck: the lag is
        # every record, reported by the timer although no new batch arrives.
        await wait_for(
            lambda: set(lags_a) == {0, 1} and sum(v or 0 for v in lags_a.values()) == 6,
            timeout=30,
            description="lag of both partitions while stuck",
        )
        consumer_b = _consumer(bootstrap, spec.name, group)
        b = ConsumeLoop.each("b", consumer_b, _decode, fine, on_lag=observer(lags_b), lag_interval=0.2)
        tg.create_task(b.run(stopping_b))
        release.set()
        # After the rebalance each replica owns one partition; A drops the one it lost.
        await wait_for(
            lambda: len([p for p, v in lags_b.items() if v is not None]) == 1
            and len([p for p, v in lags_a.items() if v is not None]) == 1,
            timeout=60,
            description="one partition each after the rebalance",
        )
        owned_by_b = next(p for p, v in lags_b.items() if v is not None)
        assert lags_a[owned_by_b] is None
        await wait_for(
            lambda: all(v in (0, None) for v in (*lags_a.values(), *lags_b.values())),
            timeout=30,
            description="all handled, no lag",
        )
        stopping_a.set()
        stopping_b.set()
    # A loop that ends reports its partitions gone.
    assert all(v is None for v in (*lags_a.values(), *lags_b.values()))
