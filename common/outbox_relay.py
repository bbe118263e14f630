"""The outbox relay: ``<schema>.outbox`` to Kafka, in id order, at least once (see ``common.outbox``).

``OutboxRelay`` (one active per schema, across replicas) reads the table in id order, sends through
the idempotent producer, waits for Kafka's acknowledgement and only then deletes the rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, set_span_in_context

from common.backoff import Backoff
from common.db import Connection, advisory_lock_key, session_connection, validate_identifier
from common.errors import is_retriable
from common.kafka import Delivered, KafkaError, OutgoingMessage, Producer
from common.outbox import decode_headers, notify_channel
from common.tasks import sleep_or_stop, wait_or_stop
from common.tracing import context_from_carrier, inject_headers, tracer

__all__ = ["DEFAULT_BACKOFF", "BacklogGauge", "OutboxRelay"]

log = structlog.get_logger(__name__)

# How long to wait between tries while Kafka or PostgreSQL is away (doubling from 0.5 s to 30 s).
DEFAULT_BACKOFF = Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.2)


class OutboxRelay:
    """Publishes ``<schema>.outbox`` to Kafka; run one per replica, one relays at a time.

    ``run(stopping)`` loops until ``stopping`` is set: it takes a session-level advisory lock
    (replicas that don't get it retry every ``lock_retry_interval`` seconds, so one takes over when
    the active one dies), LISTENs for ``enqueue``'s notifications and polls every ``poll_interval``
    seconds as a fallback. When Kafka fails, the undelivered rows stay and are retried with
    ``backoff``, in order; when PostgreSQL goes away, it reconnects. It holds one pool connection
    while active.

    If ``producer`` has not been started (Kafka was down when the service started) the relay starts
    it, retrying; its owner still stops it. ``health()`` names the problem once ``unhealthy_after``
    tries in a row have failed, for ``/readyz``.
    """

    def __init__(
        self,
        pool: Any,
        schema: str,
        producer: Producer,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lock_retry_interval: float = 5.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        unhealthy_after: int = 3,
    ) -> None:
        self.schema = validate_identifier(schema)
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._lock_retry_interval = lock_retry_interval
        self._backoff = backoff
        self._unhealthy_after = unhealthy_after
        self._wake = asyncio.Event()
        self._lock_key = advisory_lock_key("outbox", schema)
        self.is_active = False
        self.relayed = 0
        self.failures = 0
        self.failures_in_a_row = 0
        self.last_error: str | None = None

    def health(self) -> str | None:
        """``None`` while delivering (or idle); what keeps failing after several failures in a row."""
        if self.failures_in_a_row < self._unhealthy_after:
            return None
        return f"{self.failures_in_a_row} failures in a row, last: {self.last_error}"

    async def backlog(self) -> int:
        """How many events wait in the outbox (for a gauge and for tests)."""
        count: int = await self._pool.fetchval(f"SELECT count(*) FROM {self.schema}.outbox")
        return count

    async def run(self, stopping: asyncio.Event) -> None:
        """Relay until ``stopping`` is set; returns after the batch in flight (its rows deleted or kept)."""
        while not stopping.is_set():
            try:
                if not self._producer.started:
                    await self._producer.start()
                await self._run_with_connection(stopping)
            except Exception as e:
                if not is_retriable(e):
                    raise
                kafka = isinstance(e, KafkaError)
                self._note_failure(f"outbox_relay_{'kafka' if kafka else 'database'}_unavailable", e)
                await sleep_or_stop(stopping, self._backoff.delay(self.failures_in_a_row))

    def _note_failure(self, event: str, error: BaseException) -> None:
        self.failures += 1
        self.failures_in_a_row += 1
        self.last_error = f"{type(error).__name__}: {error}"[:200]
        log.warning(event, schema=self.schema, error=self.last_error, in_a_row=self.failures_in_a_row)

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()

    async def _run_with_connection(self, stopping: asyncio.Event) -> None:
        async with session_connection(self._pool) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self._lock_key):
                log.debug("outbox_relay_standby", schema=self.schema)
                self.failures_in_a_row = 0  # standing by is healthy: another replica relays
                await sleep_or_stop(stopping, self._lock_retry_interval)
                return
            channel = notify_channel(self.schema)
            await conn.add_listener(channel, self._on_notify)
            self.is_active = True
            log.info("outbox_relay_active", schema=self.schema)
            try:
                await self._relay(conn, stopping)
            finally:
                self.is_active = False
                # On a healthy connection give the lock back now; the pool's reset would too.
                if not conn.is_closed():
                    await conn.remove_listener(channel, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock($1::bigint)", self._lock_key)

    async def _relay(self, conn: Connection, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()
            rows = await conn.fetch(
                f"SELECT id, topic, key, value, headers, trace_context FROM {self.schema}.outbox"
                " ORDER BY id LIMIT $1",
                self._batch_size,
            )
            if not rows:
                self.failures_in_a_row = 0
                await wait_or_stop(self._wake, stopping, self._poll_interval)
                continue
            failed = await self._publish(conn, rows)
            if failed is None:
                self.failures_in_a_row = 0
                continue
            self._note_failure("outbox_relay_send_failed", failed)
            await sleep_or_stop(stopping, self._backoff.delay(self.failures_in_a_row))

    async def _publish(self, conn: Connection, rows: Sequence[Any]) -> KafkaError | None:
        """Send ``rows``; delete the delivered ones; return the first failure, if any."""
        spans = [_publish_span(r["topic"], r["trace_context"]) for r in rows]
        messages = [
            OutgoingMessage(
                topic=r["topic"],
                key=bytes(r["key"]),
                value=r["value"],
                headers=_traced_headers(decode_headers(r["headers"]), span),
            )
            for r, span in zip(rows, spans, strict=True)
        ]
        try:
            results = await self._producer.send_batch_settled(messages)
        finally:
            for span in spans:
                if span is not None:
                    span.end()
        # Per partition the delivered records are a prefix, so deleting exactly them never lets a
        # later event of a key overtake an earlier one that is still waiting.
        delivered = [
            r["id"] for r, result in zip(rows, results, strict=True) if isinstance(result, Delivered)
        ]
        if delivered:
            await conn.execute(f"DELETE FROM {self.schema}.outbox WHERE id = ANY($1::bigint[])", delivered)
            self.relayed += len(delivered)
        errors = [result for result in results if isinstance(result, KafkaError)]
        if not errors:
            return None
        retriable = [e for e in errors if e.retriable]
        if len(retriable) != len(errors):
            log.error(
                "outbox_relay_record_refused",
                schema=self.schema,
                ids=[r["id"] for r, res in zip(rows, results, strict=True) if isinstance(res, KafkaError)][
                    :20
                ],
                error=str(errors[0]),
            )
        return errors[0]


def _publish_span(topic: str, stored: str | None) -> Any:
    """A producer span continuing the trace stored with the row (None: the row carries no trace)."""
    if not stored:
        return None
    parent = context_from_carrier(json.loads(stored))
    return tracer(__name__).start_span(f"{topic} publish", context=parent, kind=SpanKind.PRODUCER)


def _traced_headers(headers: list[tuple[str, bytes]], span: Any) -> list[tuple[str, bytes]]:
    if span is None:
        return headers
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=set_span_in_context(span))
    return inject_headers(headers, carrier)


class BacklogGauge:
    """Reports how many events wait in the outbox (``set_value(n)``) every ``every`` seconds."""

    def __init__(self, relay: OutboxRelay, set_value: Callable[[int], None], *, every: float = 5.0) -> None:
        self._relay = relay
        self._set = set_value
        self._every = every

    async def run(self, stopping: asyncio.Event) -> None:
        while True:
            try:
                self._set(await self._relay.backlog())
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox_backlog_unknown", schema=self._relay.schema, error=error)
            if await sleep_or_stop(stopping, self._every):
                return
