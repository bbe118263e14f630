"""The one consume loop: poll → decode → typed handler → commit → lag.

A service describes what it consumes and how to handle it; the loop does the rest the same way
everywhere:

- **decode**: ``decode(record)`` turns a record into the typed event (or raises ``BadEvent``: it will
  never decode). Handlers receive ``Decoded(record, event)``, the raw record kept for dead letters.
- **handle**: ``ConsumeLoop.each`` calls the handler per record (undecodable records are logged and
  skipped); ``ConsumeLoop.batches`` calls it once per partition batch with ``Decoded`` and
  ``Undecodable`` items in offset order (for a handler that stores a batch in one transaction and
  dead-letters the bad records in it).
- **retry**: an exception the project calls retriable (``common.errors.is_retriable``: a
  ``TransientError`` such as a database or Kafka outage) is retried on the same record or batch
  with ``backoff`` until it succeeds or ``stopping`` is set, so nothing is skipped and order per
  partition holds. Any other exception ends ``run`` (the supervisor logs it and restarts the loop;
  the uncommitted records come again).
- **commit**: a partition's offset is committed once its records are handled, never before; on
  ``stopping`` what was handled is committed and the rest is left to the next owner.
- **lag**: every ``lag_interval`` seconds, on a timer of its own (so a stuck handler shows growing
  lag), ``on_lag(topic, partition, end offset - committed offset)`` for each partition assigned to
  this replica (sources with a ``lag()`` method, as ``common.kafka.Consumer``), and
  ``on_lag(topic, partition, None)`` once for a partition it no longer owns (revoked, or the loop
  ended), so a gauge drops it instead of double-counting after a rebalance.

``run(stopping)`` follows the stop protocol of ``common.tasks``. A Kafka failure (broker away,
partition moved) raises ``KafkaError`` out of ``run``; the supervisor restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, Self, TypeAlias, TypeVar

import structlog
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from common.backoff import Backoff
from common.errors import PipelineError, is_retriable
from common.kafka.lag import LagObserver, LagReports, LagSource
from common.tasks import sleep_or_stop
from common.tracing import consuming

__all__ = ["ConsumeLoop", "Decoded", "RecordSource", "Undecodable"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


@dataclass(frozen=True)
class Decoded(Generic[T]):
    """A record and the typed event it decoded to."""

    record: Record
    event: T


@dataclass(frozen=True)
class Undecodable:
    """A record that will never decode, and why (for a dead letter or a log line)."""

    record: Record
    error: PipelineError


class RecordSource(Protocol):
    """Where records come from: ``common.kafka.Consumer`` is one (group member, commits offsets)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def getmany(
        self, *, timeout_ms: int = 1000, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]: ...

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def highwater(self, tp: TopicPartition) -> int | None: ...


Decoder = Callable[[Record], T]
EachHandler = Callable[[Decoded[T]], Awaitable[None]]
BatchHandler = Callable[[Sequence[Decoded[T] | Undecodable]], Awaitable[None]]
UndecodableObserver = Callable[[Undecodable], None]

DEFAULT_BACKOFF = Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.5)


class ConsumeLoop(Generic[T]):
    """Build with ``ConsumeLoop.each(...)`` or ``ConsumeLoop.batches(...)``; run with ``run(stopping)``."""

    def __init__(
        self,
        name: str,
        source: RecordSource,
        decode: Decoder[T],
        *,
        each: EachHandler[T] | None = None,
        batch: BatchHandler[T] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        on_lag: LagObserver | None = None,
        on_undecodable: UndecodableObserver | None = None,
        poll_timeout_ms: int = 500,
        lag_interval: float = 5.0,
    ) -> None:
        if (each is None) == (batch is None):
            raise ValueError("give exactly one of each= and batch=")
        self.name = name
        self._source = source
        self._decode = decode
        self._each = each
        self._batch = batch
        self._backoff = backoff
        self._on_lag = on_lag
        self._on_undecodable = on_undecodable or self._log_undecodable
        self._poll_timeout_ms = poll_timeout_ms
        self._lag_interval = lag_interval
        self.handled = 0
        """Records handled (decoded or not) since this object was made."""
        self.undecodable = 0

    @classmethod
    def each(
        cls,
        name: str,
        source: RecordSource,
        decode: Decoder[T],
        handler: EachHandler[T],
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        on_lag: LagObserver | None = None,
        on_undecodable: UndecodableObserver | None = None,
        lag_interval: float = 5.0,
    ) -> ConsumeLoop[T]:
        """Handle one record at a time; undecodable records go to ``on_undecodable`` (default: a
        ``consume_undecodable`` warning) and are skipped."""
        return cls(
            name,
            source,
            decode,
            each=handler,
            backoff=backoff,
            on_lag=on_lag,
            on_undecodable=on_undecodable,
            lag_interval=lag_interval,
        )

    @classmethod
    def batches(
        cls,
        name: str,
        source: RecordSource,
        decode: Decoder[T],
        handler: BatchHandler[T],
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        on_lag: LagObserver | None = None,
        lag_interval: float = 5.0,
    ) -> ConsumeLoop[T]:
        """Handle each partition's polled records together, undecodable ones included, in order."""
        return cls(
            name, source, decode, batch=handler, backoff=backoff, on_lag=on_lag, lag_interval=lag_interval
        )

    def decode(self, record: Record) -> Decoded[T] | Undecodable:
        try:
            return Decoded(record, self._decode(record))
        except PipelineError as exc:
            if exc.retriable:
                raise
            return Undecodable(record, exc)

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping``; a Kafka failure raises (the supervisor restarts the loop)."""
        async with self._source as source:
            log.info("consume_loop_started", loop=self.name)
            lag = self._start_lag_reports(source, stopping)
            try:
                while not stopping.is_set():
                    polled = await source.getmany(timeout_ms=self._poll_timeout_ms)
                    for tp, records in polled.items():
                        done = await self._handle_partition(records, stopping)
                        if done is not None:
                            await source.commit_offsets({tp: done})
                        if stopping.is_set():
                            break
            finally:
                if lag is not None:
                    await lag.stop()

    async def _handle_partition(self, records: list[Record], stopping: asyncio.Event) -> int | None:
        """Handle ``records`` (one partition, offset order); return the next offset to commit, if any."""
        items = [self.decode(r) for r in records]
        if self._batch is not None:
            batch = self._batch
            if not await self._until_done(lambda: batch(items), stopping):
                return None
            self.handled += len(items)
            self.undecodable += sum(isinstance(i, Undecodable) for i in items)
            last: int = records[-1].offset
            return last + 1
        done: int | None = None
        for item in items:
            if stopping.is_set():
                break
            if isinstance(item, Undecodable):
                self.undecodable += 1
                self._on_undecodable(item)
            else:
                with consuming(item.record):  # continues the producer's trace (W3C headers)
                    if not await self._until_done(_call(self._each, item), stopping):
                        break
            self.handled += 1
            offset: int = item.record.offset
            done = offset + 1
        return done

    def _log_undecodable(self, item: Undecodable) -> None:
        log.warning(
            "consume_undecodable",
            loop=self.name,
            error_code=item.error.code,
            error=item.error.message,
            topic=item.record.topic,
            partition=item.record.partition,
            offset=item.record.offset,
        )

    async def _until_done(self, attempt: Callable[[], Awaitable[None]], stopping: asyncio.Event) -> bool:
        """Run ``attempt`` until it succeeds (True) or ``stopping`` is set while retrying (False)."""
        failures = 0
        while True:
            try:
                await attempt()
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning(
                    "consume_retrying",
                    loop=self.name,
                    attempt=failures,
                    retry_in=round(delay, 2),
                    error=f"{type(exc).__name__}: {exc}",
                )
                if await sleep_or_stop(stopping, delay):
                    return False
            else:
                return True

    def _start_lag_reports(self, source: RecordSource, stopping: asyncio.Event) -> LagReports | None:
        if self._on_lag is None or not isinstance(source, LagSource):
            return None
        return LagReports.start(self.name, source, self._on_lag, self._lag_interval, stopping)


def _call(handler: EachHandler[T] | None, item: Decoded[T]) -> Callable[[], Awaitable[None]]:
    assert handler is not None  # noqa: S101 - each-mode loops always have one
    return lambda: handler(item)
