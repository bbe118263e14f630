"""The Kafka consumer of ``tiktok.token.refresh-requested``: decode, hand to the refresher, commit.

Offsets are committed only after the handler is done with a record. A record that can't be decoded
is logged and skipped (it will never decode); a transient failure (database down) is retried with
backoff on the same record, so nothing is skipped and order per account is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from auth_service.domain.schedule import Backoff
from common.errors import TransientError
from common.events import BadEvent, EventType, RefreshRequestedData, decode
from common.kafka import TOPIC_TOKEN_REFRESH_REQUESTED, Consumer, ConsumerRecord, KafkaError, TopicPartition
from common.tasks import sleep_or_stop

log = structlog.get_logger(__name__)

# Worth retrying the same record: the database is away, or TikTok is (a retriable PipelineError
# such as TransientError would say so too).
_TRANSIENT = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, TransientError)

RequestHandler = Callable[[RefreshRequestedData, str | None], Awaitable[str]]


class RefreshRequestConsumer:
    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str,
        group_id: str,
        handler: RequestHandler,
        *,
        client_id: str | None = None,
        backoff: Backoff | None = None,
        on_lag: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self.topic = topic_prefix + TOPIC_TOKEN_REFRESH_REQUESTED
        self._group = group_id
        self._client_id = client_id
        self._handler = handler
        self._backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self.handled = 0
        self._on_lag = on_lag

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping``; a Kafka outage ends this call (the supervisor restarts it)."""
        consumer = Consumer(
            self._bootstrap,
            [self.topic],
            group_id=self._group,
            client_id=self._client_id,
            max_poll_records=100,
        )
        done: dict[TopicPartition, int] = {}
        async with consumer:
            log.info("refresh_request_consumer_started", topic=self.topic)
            while not stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                offsets: dict[TopicPartition, int] = {}
                for tp, records in batch.items():
                    for record in records:
                        if not await self._process(record, stopping):
                            break  # stopping: leave the rest uncommitted for the next owner
                        offsets[tp] = record.offset + 1
                if offsets:
                    await consumer.commit_offsets(offsets)
                    done.update(offsets)
                self._report_lag(consumer, done)

    def _report_lag(self, consumer: Consumer, done: dict[TopicPartition, int]) -> None:
        """Records not yet handled per partition: the high watermark minus the next offset to handle."""
        if self._on_lag is None:
            return
        raw = consumer.raw
        for tp in raw.assignment():
            highwater = raw.highwater(tp)
            if highwater is not None and tp in done:
                self._on_lag(tp.topic, tp.partition, max(0, highwater - done[tp]))

    async def _process(self, record: ConsumerRecord[bytes, bytes], stopping: asyncio.Event) -> bool:
        try:
            envelope = decode(record.value, RefreshRequestedData, expected_type=EventType.refresh_requested)
        except BadEvent as exc:
            log.warning(
                "refresh_request_invalid", error_code=exc.code, error=exc.message, offset=record.offset
            )
            return True
        attempt = 0
        while True:
            try:
                with structlog.contextvars.bound_contextvars(
                    correlation_id=envelope.correlation_id, account_id=envelope.data.account_id
                ):
                    await self._handler(envelope.data, envelope.correlation_id)
            except KafkaError:
                raise
            except _TRANSIENT as exc:
                attempt += 1
                log.warning("refresh_request_failed", error=f"{type(exc).__name__}: {exc}", attempt=attempt)
                if await sleep_or_stop(stopping, self._backoff.delay(attempt)):
                    return False
            except Exception:
                # A bug on one record must not stall the partition behind it.
                log.exception("refresh_request_crashed", offset=record.offset)
                return True
            else:
                self.handled += 1
                return True
