"""Kafka: topic provisioning, an idempotent producer and a manually committed consumer.

The wrappers own their aiokafka client (``start``/``stop`` or ``async with``) and translate aiokafka's
errors into this module's small tree, whose classes say whether trying again can help
(``KafkaUnavailable.retriable``) so that callers act on behaviour, not on aiokafka's many types.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self

import aiokafka.errors as ak_errors
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord

from common.errors import PipelineError
from common.kafka_security import client_security

__all__ = [
    "DAY_MS",
    "TOPIC_ACCESS_TOKENS",
    "TOPIC_ACCOUNTS",
    "TOPIC_POST_REQUESTED",
    "TOPIC_POST_REQUESTED_DLQ",
    "TOPIC_POST_STATUS",
    "TOPIC_TOKEN_REFRESH_REQUESTED",
    "Consumer",
    "ConsumerRecord",
    "Delivered",
    "KafkaError",
    "KafkaPublishFailed",
    "KafkaUnavailable",
    "OutgoingMessage",
    "Producer",
    "RebalanceHook",
    "TopicAction",
    "TopicPartition",
    "TopicSpec",
    "ensure_topics",
    "standard_topics",
]

log = structlog.get_logger(__name__)

DAY_MS = 24 * 60 * 60 * 1000

# Topic names before the configurable prefix (DESIGN.md, "Topics").
TOPIC_POST_REQUESTED = "tiktok.post.requested"
TOPIC_POST_STATUS = "tiktok.post.status"
TOPIC_ACCOUNTS = "tiktok.accounts"
TOPIC_ACCESS_TOKENS = "tiktok.access-tokens"
TOPIC_TOKEN_REFRESH_REQUESTED = "tiktok.token.refresh-requested"  # noqa: S105  # a name, not a secret
TOPIC_POST_REQUESTED_DLQ = "tiktok.post.requested.dlq"


# --------------------------------------------------------------------------------------------- errors


class KafkaError(PipelineError):
    """Something went wrong talking to Kafka."""

    code = "kafka_error"


class KafkaUnavailable(KafkaError):
    """Kafka could not be reached or did not answer in time; trying again later can help."""

    code = "kafka_unavailable"
    retriable = True
    http_status = 503


class KafkaPublishFailed(KafkaError):
    """Kafka refused a record for a reason that retrying won't fix (too large, not authorised…)."""

    code = "kafka_publish_failed"


def translate_error(exc: BaseException) -> KafkaError:
    """Map an aiokafka exception onto this module's tree (``raise translate_error(e) from e``)."""
    if isinstance(exc, KafkaError):
        return exc
    if isinstance(exc, ak_errors.KafkaTimeoutError | ak_errors.KafkaConnectionError | TimeoutError):
        return KafkaUnavailable(f"Kafka unavailable: {exc}")
    if isinstance(exc, ak_errors.UnknownTopicOrPartitionError):
        # Also what aiokafka raises when metadata can't be fetched in time because no broker answers.
        return KafkaUnavailable(f"topic unknown or Kafka unavailable: {exc}")
    if isinstance(exc, ak_errors.KafkaError) and exc.retriable:
        return KafkaUnavailable(f"Kafka: {exc}")
    if isinstance(exc, ak_errors.MessageSizeTooLargeError | ak_errors.RecordTooLargeError):
        return KafkaPublishFailed(f"record too large: {exc}")
    return KafkaError(f"Kafka: {exc}")


# --------------------------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


class TopicAction(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    ALTERED = "altered"


def standard_topics(
    prefix: str = "", *, partitions: int = 6, replication_factor: int = 1
) -> dict[str, TopicSpec]:
    """The six topics of DESIGN.md, keyed by their unprefixed name, named ``prefix + name``."""

    def delete(days: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}

    compact = {"cleanup.policy": "compact"}
    wanted = {
        TOPIC_POST_REQUESTED: delete(7),
        TOPIC_POST_STATUS: delete(7),
        TOPIC_ACCOUNTS: compact,
        TOPIC_ACCESS_TOKENS: compact,
        TOPIC_TOKEN_REFRESH_REQUESTED: delete(1),
        TOPIC_POST_REQUESTED_DLQ: delete(30),
    }
    return {
        name: TopicSpec(
            name=f"{prefix}{name}",
            partitions=partitions,
            replication_factor=replication_factor,
            config=config,
        )
        for name, config in wanted.items()
    }


async def ensure_topics(
    bootstrap_servers: str,
    specs: Iterable[TopicSpec],
    *,
    alter_config: bool = True,
    request_timeout_ms: int = 30_000,
) -> dict[str, TopicAction]:
    """Create the missing topics; bring the config of existing ones to their spec.

    Existing topics whose config differs are altered when ``alter_config`` (Kafka's AlterConfigs
    sets the topic's whole override set, so the spec must list every override the topic should
    keep). Partition counts are never changed: that would move keys to other partitions and break
    per-key ordering, so a mismatch is only logged.
    """
    wanted = {s.name: s for s in specs}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=request_timeout_ms, **client_security()
    )
    try:
        await admin.start()
        return await _ensure_topics(admin, wanted, alter_config=alter_config)
    except ak_errors.KafkaError as e:
        raise translate_error(e) from e
    finally:
        await admin.close()


async def _ensure_topics(
    admin: Any, wanted: dict[str, TopicSpec], *, alter_config: bool
) -> dict[str, TopicAction]:
    existing = set(await admin.list_topics())
    result: dict[str, TopicAction] = {}
    missing = [s for name, s in wanted.items() if name not in existing]
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    topic_configs=dict(s.config),
                )
                for s in missing
            ]
        )
        for topic, error_code, *rest in response.topic_errors:
            if error_code == 0:
                result[topic] = TopicAction.CREATED
                log.info("kafka_topic_created", topic=topic)
            elif ak_errors.for_code(error_code) is ak_errors.TopicAlreadyExistsError:
                existing.add(topic)  # another replica won the race; check it like any existing one
            else:
                error = ak_errors.for_code(error_code)
                message = rest[0] if rest else ""
                raise translate_error(error(f"creating topic {topic}: {message}"))

    # Creation returns before every broker (even a single KRaft node's own metadata cache) knows the
    # topic; wait, so the caller can produce and describe right away.
    await _wait_until_known(admin, list(wanted))
    present = [wanted[name] for name in wanted if name in existing and name not in result]
    for spec in present:
        result[spec.name] = await _reconcile(admin, spec, alter_config=alter_config)
    return result


async def _wait_until_known(admin: Any, topics: list[str], within: float = 30.0) -> None:
    unknown: list[str] = topics
    try:
        async with asyncio.timeout(within):
            while True:
                described = await admin.describe_topics(topics)
                unknown = [
                    t["topic"]
                    for t in described
                    if t["error_code"] or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])
                ]
                if not unknown:
                    return
                await asyncio.sleep(0.1)
    except TimeoutError as e:
        raise KafkaUnavailable(f"topics not ready after {within:g}s: {', '.join(sorted(unknown))}") from e


async def _reconcile(admin: Any, spec: TopicSpec, *, alter_config: bool) -> TopicAction:
    current = await describe_topic_config(admin, spec.name)
    drift = {k: v for k, v in spec.config.items() if current.get(k) != v}
    described = await admin.describe_topics([spec.name])
    partitions = len(described[0]["partitions"]) if described else 0
    if partitions and partitions != spec.partitions:
        log.warning(
            "kafka_topic_partitions_differ", topic=spec.name, actual=partitions, wanted=spec.partitions
        )
    if not drift:
        return TopicAction.UNCHANGED
    if not alter_config:
        log.warning("kafka_topic_config_differs", topic=spec.name, differs=sorted(drift))
        return TopicAction.UNCHANGED
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=dict(spec.config))]
    )
    for response in responses:
        for error_code, error_message, *_ in response.resources:
            if error_code != 0:
                error = ak_errors.for_code(error_code)
                raise translate_error(error(f"altering topic {spec.name}: {error_message}"))
    log.info("kafka_topic_config_altered", topic=spec.name, changed=sorted(drift))
    return TopicAction.ALTERED


async def describe_topic_config(admin: Any, topic: str) -> dict[str, str]:
    """The effective config of ``topic`` (defaults included), as names to values."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    config: dict[str, str] = {}
    for response in responses:
        for error_code, error_message, _type, _name, entries in response.resources:
            if error_code != 0:
                error = ak_errors.for_code(error_code)
                raise translate_error(error(f"describing topic {topic}: {error_message}"))
            for entry in entries:
                config[entry[0]] = entry[1]
    return config


async def fetch_topic_config(bootstrap_servers: str, topic: str) -> dict[str, str]:
    """``describe_topic_config`` with its own short-lived admin client."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_security())
    try:
        await admin.start()
        return await describe_topic_config(admin, topic)
    except ak_errors.KafkaError as e:
        raise translate_error(e) from e
    finally:
        await admin.close()


# --------------------------------------------------------------------------------------------- producer


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

    ``send`` and ``send_batch`` return only once Kafka has acknowledged the records. A batch is sent
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
            producer = AIOKafkaProducer(**self._options, **client_security())
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

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[Delivered]:
        """Send all ``messages`` and wait for all; raise the first failure if any record failed."""
        results = await self.send_batch_settled(messages)
        for r in results:
            if isinstance(r, KafkaError):
                raise r
        return [r for r in results if isinstance(r, Delivered)]

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


# --------------------------------------------------------------------------------------------- consumer


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
        consumer = AIOKafkaConsumer(**self._options, **client_security())
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

    def __aiter__(self) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        return self._records()

    async def _records(self) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        consumer = self.raw
        while True:
            try:
                record = await consumer.getone()
            except ak_errors.ConsumerStoppedError:
                return
            except ak_errors.KafkaError as e:
                raise translate_error(e) from e
            yield record

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

    async def batches(
        self, *, timeout_ms: int = 1000, max_records: int | None = None
    ) -> AsyncIterator[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]:
        """``getmany`` in a loop, skipping empty polls, until the consumer is stopped."""
        while self._consumer is not None:
            try:
                batch = await self.getmany(timeout_ms=timeout_ms, max_records=max_records)
            except ak_errors.ConsumerStoppedError:
                return
            if batch:
                yield batch

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

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed next-to-read offset for ``tp``, or ``None`` if none."""
        try:
            offset: int | None = await self.raw.committed(tp)
        except ak_errors.KafkaError as e:
            raise translate_error(e) from e
        return offset
