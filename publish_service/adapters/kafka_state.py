"""Reading the compacted ``tiktok.accounts`` and ``tiktok.access-tokens`` topics in full.

``common.kafka.Consumer`` is a group consumer; here every replica must see every record, so this
adapter assigns itself all partitions with no group and starts from the beginning each time. It is
fine to replay: the repository keeps the newest state per account (token_version, Kafka offset).
``caught_up`` is set once everything present at start has been applied, and intake waits for it,
so a post is never rejected as "unknown account" only because this replica started a moment ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiokafka.errors as ak_errors
import structlog
from aiokafka import TopicPartition

from common.kafka import ConsumerRecord, KafkaUnavailable, translate_error
from common.kafka.clients import new_consumer

log = structlog.get_logger(__name__)

RecordHandler = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]


class FullTopicReader:
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

    async def run(self, handle: RecordHandler, stopping: asyncio.Event) -> None:
        """Read every partition from the start, then follow; returns when ``stopping`` is set."""
        consumer = new_consumer(**self._options)
        try:
            await consumer.start()
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends: dict[Any, int] = await consumer.end_offsets(partitions)
            pending = {tp for tp, end in ends.items() if end > 0}
            if not pending:
                self.caught_up.set()
            while not stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp, records in batch.items():
                    for record in records:
                        await handle(record)
                    if tp in pending and records and records[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
                if pending:
                    for tp in list(pending):
                        if await consumer.position(tp) >= ends[tp]:
                            pending.discard(tp)
                if not pending and not self.caught_up.is_set():
                    log.info("state_topics_caught_up", topics=self._topics)
                    self.caught_up.set()
        except ak_errors.KafkaError as e:
            raise translate_error(e) from e
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: Any) -> list[Any]:
        out: list[Any] = []
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
