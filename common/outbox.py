"""The transactional outbox: events are written with the state change, and relayed to Kafka after.

A handler calls ``enqueue`` inside the transaction that changes its rows, so the event exists if and
only if the change committed. ``OutboxRelay`` (one active per schema, across replicas) reads the
table in id order, sends through the idempotent producer, waits for Kafka's acknowledgement and only
then deletes the rows. Delivery is at least once: a crash between the acknowledgement and the delete
sends those events again, and consumers drop repeats by ``event_id``.

Each service's first migration creates the table; ``outbox_ddl(schema)`` is its one definition
(``tests/common/test_outbox.py`` checks that both services' migrations create exactly this table).

Ordering: rows of one Kafka partition (so of one key) reach Kafka in id order. Ids are taken at
insert, not at commit, so two transactions that write events for the same key must be serialised
by the caller (they normally are: both lock the same account or post row).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, set_span_in_context

from common.backoff import Backoff
from common.db import Connection, advisory_lock_key, session_connection, validate_identifier
from common.errors import InvalidInput, PipelineError, is_retriable
from common.kafka import Delivered, KafkaError, OutgoingMessage, Producer
from common.tasks import sleep_or_stop, wait_or_stop
from common.tracing import context_from_carrier, current_carrier, inject_headers, tracer

__all__ = [
    "BacklogGauge",
    "OutboxError",
    "OutboxRecord",
    "OutboxRelay",
    "enqueue",
    "enqueue_many",
    "notify_channel",
    "outbox_ddl",
    "outbox_trace_ddl",
]

log = structlog.get_logger(__name__)

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024

# How long to wait between tries while Kafka or PostgreSQL is away (doubling from 0.5 s to 30 s).
DEFAULT_BACKOFF = Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.2)


class OutboxError(PipelineError):
    code = "outbox_error"


def outbox_ddl(schema: str) -> str:
    """The ``CREATE TABLE`` for ``<schema>.outbox``, for a service's migration."""
    validate_identifier(schema)
    return f"""CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea       NOT NULL,
    value      bytea,
    headers    jsonb       NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


def outbox_trace_ddl(schema: str) -> str:
    """The migration that adds ``trace_context`` (W3C headers of the enqueuing span, or NULL)."""
    validate_identifier(schema)
    return f"ALTER TABLE {schema}.outbox ADD COLUMN IF NOT EXISTS trace_context jsonb;\n"


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes the relay of ``schema``."""
    return f"{validate_identifier(schema)}_outbox"


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[name, base64.b64encode(value).decode("ascii")] for name, value in headers])


def _decode_headers(raw: str | None) -> list[tuple[str, bytes]]:
    if not raw:
        return []
    return [(str(name), base64.b64decode(value)) for name, value in json.loads(raw)]


@dataclass(frozen=True)
class OutboxRecord:
    """One event for :func:`enqueue_many`."""

    topic: str
    key: bytes | str
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    # The W3C trace headers this row continues; None: the trace current at enqueue_many (as enqueue).
    trace_context: Mapping[str, str] | None = None


def _checked(conn: Any, schema: str, record: OutboxRecord, max_record_bytes: int) -> tuple[bytes, str]:
    """The key's bytes and the encoded headers, after the checks both enqueue functions make."""
    validate_identifier(schema)
    if not conn.is_in_transaction():
        raise OutboxError("outbox.enqueue must run inside the caller's transaction")
    key_bytes = record.key.encode("utf-8") if isinstance(record.key, str) else record.key
    size = len(key_bytes) + len(record.value or b"") + sum(len(n) + len(v) for n, v in record.headers)
    if size > max_record_bytes:
        raise InvalidInput(
            f"event of {size} bytes for {record.topic} exceeds the {max_record_bytes}-byte limit"
        )
    return key_bytes, _encode_headers(record.headers)


async def enqueue(
    conn: Connection,
    schema: str,
    topic: str,
    key: bytes | str,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> int:
    """Add one event to ``<schema>.outbox`` as part of the caller's open transaction; return its id.

    Refuses to run outside a transaction: the point is that the event commits or rolls back with
    the state change. Records larger than ``max_record_bytes`` (the producer's limit) are refused
    here, where the caller can still act, instead of blocking their partition in the relay.
    """
    key_bytes, encoded = _checked(conn, schema, OutboxRecord(topic, key, value, headers), max_record_bytes)
    # The trace of the change (if any) travels with the row: the relay sends it in the headers.
    # One round trip: the row, and the notification that wakes the relay (delivered at commit, and
    # not at all on rollback).
    carrier = current_carrier()
    event_id: int = await conn.fetchval(
        f"WITH added AS (INSERT INTO {schema}.outbox (topic, key, value, headers, trace_context)"
        " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb) RETURNING id)"
        " SELECT id FROM added, pg_notify($6, '')",
        topic,
        key_bytes,
        value,
        encoded,
        json.dumps(carrier) if carrier else None,
        notify_channel(schema),
    )
    return event_id


async def enqueue_many(
    conn: Any,
    schema: str,
    records: Sequence[OutboxRecord],
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> None:
    """Add ``records`` to ``<schema>.outbox`` in one statement, in their order (ids ascend with it).

    The same checks as :func:`enqueue`; a record over the limit refuses the whole call. Each row
    stores its record's ``trace_context``, or (like :func:`enqueue`) the trace current here.
    """
    if not records:
        return
    keys, headers = zip(*(_checked(conn, schema, r, max_record_bytes) for r in records), strict=True)
    current = current_carrier()
    traces = [r.trace_context if r.trace_context is not None else current for r in records]
    # One round trip: the rows and one notification for the relay (a data-modifying WITH runs once,
    # whether or not the SELECT reads it; the notification is delivered at commit, not on rollback).
    await conn.execute(
        f"WITH added AS (INSERT INTO {schema}.outbox (topic, key, value, headers, trace_context)"
        " SELECT u.topic, u.key, u.value, u.headers::jsonb, u.trace::jsonb"
        " FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::text[])"
        " WITH ORDINALITY AS u(topic, key, value, headers, trace, n) ORDER BY u.n)"
        " SELECT pg_notify($6, '')",
        [r.topic for r in records],
        list(keys),
        [r.value for r in records],
        list(headers),
        [json.dumps(dict(t)) if t else None for t in traces],
        notify_channel(schema),
    )


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
                headers=_traced_headers(_decode_headers(r["headers"]), span),
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
