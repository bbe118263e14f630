"""The group consumer that commits only what its caller says it has processed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import aiokafka.errors as ak_errors
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from common.kafka.clients import new_consumer
from common.kafka.errors import KafkaError, translate_error


class RebalanceHook(Protocol):
    """Called around a rebalance: commit or checkpoint in ``on_revoked``, load state in ``on_assigned``."""

    async def on_revoked(self, partitions: set[TopicPartition]) -> None: ...

    async def on_assigned(self, partitions: set[TopicPartition]) -> None: ...


class _ListenerAdapter(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, hook: RebalanceHook) -> None:
        self._hook = hook

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._hook.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._hook.on_assigned(set(assigned))


class Consumer:
    """A group consumer that commits only what the caller says it has processed.

    ``enable_auto_commit=False`` and ``auto_offset_reset="earliest"``: a new group starts at the
    beginning, and after a crash or rebalance a partition resumes after its last committed record.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Sequence[str],
        *,
        group_id: str,
        client_id: str | None = None,
        rebalance_hook: RebalanceHook | None = None,
        max_poll_records: int | None = 500,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 300_000,
        request_timeout_ms: int = 40_000,
    ) -> None:
        self.topics = list(topics)
        self.group_id = group_id
        self._hook = rebalance_hook
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id or f"{group_id}-consumer",
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_poll_records,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "max_poll_interval_ms": max_poll_interval_ms,
            "request_timeout_ms": request_timeout_ms,
            "isolation_level": "read_committed",
        }
        self._consumer: Any = None

    @property
    def raw(self) -> Any:
        if self._consumer is None:
            raise RuntimeError("consumer not started")
        return self._consumer

    async def start(self) -> None:
        """Connect and join the group; returns once partitions are assigned."""
        if self._consumer is not None:
            return
        consumer = new_consumer(**self._options)
        listener = _ListenerAdapter(self._hook) if self._hook is not None else None
        consumer.subscribe(topics=self.topics, listener=listener)
        try:
            await consumer.start()
        except ak_errors.KafkaError as e:
            await consumer.stop()
            raise translate_error(e) from e
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        """Leave the group and close; uncommitted records will be delivered again to the next owner."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def getmany(
        self, *, timeout_ms: int = 1000, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Whatever arrives within ``timeout_ms``, grouped by partition, each list in offset order."""
        try:
            batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await self.raw.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
        except ak_errors.KafkaError as e:
            raise translate_error(e) from e
        return batch

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's last known end offset (for lag); ``None`` before the first fetch or if the
        partition is no longer assigned to this consumer."""
        raw = self.raw
        if tp not in raw.assignment():
            return None
        value: int | None = raw.highwater(tp)
        return value

    async def lag(self) -> dict[TopicPartition, int]:
        """Per partition assigned now: its end offset minus the group's committed offset (the
        partition's first offset where the group has committed nothing yet)."""
        raw = self.raw
        assigned = list(raw.assignment())
        if not assigned:
            return {}
        try:
            ends: dict[TopicPartition, int] = await raw.end_offsets(assigned)
            committed = {tp: await raw.committed(tp) for tp in assigned}
            never = [tp for tp, offset in committed.items() if offset is None]
            starts: dict[TopicPartition, int] = await raw.beginning_offsets(never) if never else {}
        except ak_errors.KafkaError as e:
            raise translate_error(e) from e
        lags: dict[TopicPartition, int] = {}
        for tp in assigned:
            position = committed[tp]
            start = position if position is not None else starts[tp]
            lags[tp] = max(0, ends[tp] - start)
        return lags

    async def commit(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Mark ``record`` and everything before it in its partition as processed."""
        await self.commit_offsets({TopicPartition(record.topic, record.partition): record.offset + 1})

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit explicit next-to-read offsets (the last processed offset + 1) per partition."""
        try:
            await self.raw.commit(dict(offsets))
        except ak_errors.CommitFailedError as e:
            raise KafkaError(f"commit rejected, the partition moved to another consumer: {e}") from e
        except ak_errors.KafkaError as e:
            raise translate_error(e) from e
