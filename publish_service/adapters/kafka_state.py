"""Reading the compacted ``tiktok.accounts`` and ``tiktok.access-tokens`` topics in full.

``common.kafka.Consumer`` is a group consumer; here every replica must see every record, so this
source assigns itself all partitions with no group and starts from the beginning each time. It is a
``RecordSource`` for the shared ``ConsumeLoop`` with a no-op commit: it is fine to replay, the
repository keeps the newest state per account (token_version, Kafka offset).

``caught_up`` is set once everything present at start has been handled, and intake waits for it, so
a post is never rejected as "unknown account" only because this replica started a moment ago. The
loop handles every record of a poll before it polls again, so at the start of ``getmany`` the
consumer's position is the end of what was handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiokafka.errors as ak_errors
import structlog
from aiokafka import TopicPartition

from common.kafka import ConsumerRecord, KafkaUnavailable, translate_error
from common.kafka.clients import new_consumer

log = structlog.get_logger(__name__)


class FullTopicSource:
    def __init__(self, bootstrap_servers: str, topics: Sequence[str], *, client_id: str) -> None:
        self._topics = list(topics)
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
        }
        self.caught_up = asyncio.Event()
        self._consumer: Any = None
        self._ends: dict[TopicPartition, int] = {}
        self._pending: set[TopicPartition] = set()

    async def __aenter__(self) -> Self:
        consumer = new_consumer(**self._options)
        self._consumer = consumer
        try:
            await consumer.start()
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self._ends = await consumer.end_offsets(partitions)
        except ak_errors.KafkaError as e:
            await consumer.stop()
            raise translate_error(e) from e
        except BaseException:
            await consumer.stop()
            raise
        self._pending = {tp for tp, end in self._ends.items() if end > 0}
        self._mark_caught_up()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def getmany(
        self, *, timeout_ms: int = 1000, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        try:
            for tp in list(self._pending):  # what earlier polls returned has been handled by now
                if await self._consumer.position(tp) >= self._ends[tp]:
                    self._pending.discard(tp)
            self._mark_caught_up()
            polled: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await self._consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records or 500
            )
        except ak_errors.KafkaError as e:
            raise translate_error(e) from e
        return polled

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Nothing to commit: every start reads the topics from the beginning."""

    def highwater(self, tp: TopicPartition) -> int | None:
        value: int | None = self._consumer.highwater(tp)
        return value

    def _mark_caught_up(self) -> None:
        if not self._pending and not self.caught_up.is_set():
            log.info("state_topics_caught_up", topics=self._topics)
            self.caught_up.set()

    async def _partitions(self, consumer: Any) -> list[TopicPartition]:
        out: list[TopicPartition] = []
        for topic in self._topics:
            for _ in range(60):
                parts = consumer.partitions_for_topic(topic)
                if parts:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.5)
            else:
                raise KafkaUnavailable(f"topic {topic} has no partitions (does it exist?)")
            out.extend(TopicPartition(topic, p) for p in sorted(parts))
        return out
