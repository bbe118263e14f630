"""The idempotent producer: ``send``/``send_batch_settled`` return once Kafka has acknowledged."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiokafka.errors as ak_errors
import structlog
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from common.kafka.clients import new_producer
from common.kafka.errors import KafkaError, KafkaPublishFailed, KafkaUnavailable, translate_error

log = structlog.get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes | None  # None is a tombstone on a compacted topic
    headers: Headers = ()


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


def _key_bytes(key: bytes | str) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


class Producer:
    """An idempotent producer (``enable_idempotence=True``, ``acks="all"``).

    ``send`` and ``send_batch_settled`` return only once Kafka has acknowledged the records. A batch is sent
    per partition as whole record batches, one at a time, so if one fails nothing after it in that
    partition has been written: the caller can retry the undelivered tail without reordering a key.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str | None = None,
        linger_ms: int = 5,
        request_timeout_ms: int = 30_000,
        max_batch_size: int = 256 * 1024,
        max_request_size: int = 1024 * 1024,
        compression_type: str | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.max_request_size = max_request_size
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": linger_ms,
            "request_timeout_ms": request_timeout_ms,
            "max_batch_size": max_batch_size,
            "max_request_size": max_request_size,
            "compression_type": compression_type,
        }
        self._producer: Any = None
        self._lifecycle = asyncio.Lock()
        self._partitioner = DefaultPartitioner()

    @property
    def config(self) -> Mapping[str, Any]:
        """The options the underlying ``AIOKafkaProducer`` is built with."""
        return dict(self._options)

    @property
    def started(self) -> bool:
        return self._producer is not None

    @property
    def raw(self) -> Any:
        """The started ``AIOKafkaProducer`` (for inspection; prefer this class's methods)."""
        if self._producer is None:
            raise RuntimeError("producer not started")
        return self._producer

    async def start(self) -> None:
        """Connect; raises ``KafkaUnavailable`` if no broker answers. Safe to call again."""
        async with self._lifecycle:  # the owner and a relay may both start it; make only one
            if self._producer is not None:
                return
            producer = new_producer(**self._options)
            try:
                await producer.start()
            except ak_errors.KafkaError as e:
                await producer.stop()
                raise translate_error(e) from e
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer

    async def stop(self) -> None:
        """Flush what is pending and close."""
        async with self._lifecycle:
            producer, self._producer = self._producer, None
            if producer is not None:
                await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def send(
        self, topic: str, key: bytes | str, value: bytes | None, headers: Headers = ()
    ) -> Delivered:
        """Send one record and wait until Kafka has acknowledged it."""
        try:
            meta = await self.raw.send_and_wait(
                topic, value=value, key=_key_bytes(key), headers=list(headers)
            )
        except ak_errors.KafkaError as e:
            raise translate_error(e) from e
        return Delivered(meta.topic, meta.partition, meta.offset)

    async def send_batch_settled(self, messages: Sequence[OutgoingMessage]) -> list[Delivered | KafkaError]:
        """Send all ``messages``; return, in input order, where each landed or why it didn't.

        Records of one partition keep their input order. Within a partition, once a record (or a
        record batch) fails, the records after it are not sent and get the same error, so the
        delivered records of every partition are always a prefix of that partition's input.
        """
        results: list[Delivered | KafkaError] = [KafkaUnavailable("not sent")] * len(messages)
        # One topic without metadata (unknown, unauthorised) must not hold back the others.
        topics = list(dict.fromkeys(m.topic for m in messages))
        partitions = dict(zip(topics, await asyncio.gather(*map(self._partitions_for, topics)), strict=True))
        by_partition: dict[TopicPartition, list[int]] = defaultdict(list)
        for i, m in enumerate(messages):
            ps = partitions[m.topic]
            if isinstance(ps, KafkaError):
                results[i] = ps
            else:
                by_partition[TopicPartition(m.topic, self._partitioner(m.key, ps, ps))].append(i)
        await asyncio.gather(
            *(self._send_partition(tp, idx, messages, results) for tp, idx in by_partition.items())
        )
        return results

    async def _partitions_for(self, topic: str) -> list[int] | KafkaError:
        try:
            return sorted(await self.raw.partitions_for(topic))
        except ak_errors.KafkaError as e:
            return translate_error(e)

    def _too_large(self, m: OutgoingMessage) -> KafkaPublishFailed | None:
        size = len(m.key) + len(m.value or b"") + sum(len(k) + len(v) for k, v in m.headers)
        if size > self.max_request_size:
            return KafkaPublishFailed(
                f"record of {size} bytes exceeds max_request_size {self.max_request_size}"
            )
        return None

    async def _send_partition(
        self,
        tp: TopicPartition,
        indexes: list[int],
        messages: Sequence[OutgoingMessage],
        results: list[Delivered | KafkaError],
    ) -> None:
        pending = list(indexes)
        while pending:
            batch = self.raw.create_batch()
            taken: list[int] = []
            error: KafkaError | None = None
            for i in pending:
                m = messages[i]
                error = self._too_large(m)
                if error is not None:
                    break
                if batch.append(key=m.key, value=m.value, timestamp=None, headers=list(m.headers)) is None:
                    break
                taken.append(i)
            batch.close()
            if taken:
                try:
                    future = await self.raw.send_batch(batch, tp.topic, partition=tp.partition)
                    meta = await future
                except (TimeoutError, ak_errors.KafkaError) as e:
                    error = translate_error(e)
                    taken = []
                    log.warning(
                        "kafka_batch_not_delivered", topic=tp.topic, partition=tp.partition, error=str(e)
                    )
                else:
                    for n, i in enumerate(taken):
                        results[i] = Delivered(tp.topic, tp.partition, meta.offset + n)
            pending = pending[len(taken) :]
            if error is not None:
                for i in pending:
                    results[i] = error
                return

