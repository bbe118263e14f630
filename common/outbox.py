"""The transactional outbox: events are written with the state change, and relayed to Kafka after.

A handler calls ``enqueue`` inside the transaction that changes its rows, so the event exists if and
only if the change committed. ``OutboxRelay`` (one active per schema, across replicas) reads the
table in id order, sends through the idempotent producer, waits for Kafka's acknowledgement and only
then deletes the rows. Delivery is at least once: a crash between the acknowledgement and the delete
sends those events again, and consumers drop repeats by ``event_id``.

Each service's migrations create the table; ``outbox_ddl(schema)`` returns the statement to put in a
migration file (or copy it from there)::

    CREATE TABLE outbox (
        id         bigserial PRIMARY KEY,
        topic      text        NOT NULL,
        key        bytea       NOT NULL,
        value      bytea,
        headers    jsonb       NOT NULL DEFAULT '[]',
        created_at timestamptz NOT NULL DEFAULT now()
    );

Ordering: rows of one Kafka partition (so of one key) reach Kafka in id order. Ids are taken at
insert, not at commit, so two transactions that write events for the same key must be serialised
by the caller (they normally are: both lock the same account or post row).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from common.db import advisory_lock_key, validate_identifier
from common.errors import InvalidInput, PipelineError
from common.kafka import Delivered, KafkaError, KafkaUnavailable, OutgoingMessage, Producer

__all__ = ["OutboxError", "OutboxRelay", "enqueue", "notify_channel", "outbox_ddl"]

log = structlog.get_logger(__name__)

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024

# What a lost or restarting PostgreSQL looks like through asyncpg.
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


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


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes the relay of ``schema``."""
    return f"{validate_identifier(schema)}_outbox"


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[name, base64.b64encode(value).decode("ascii")] for name, value in headers])


def _decode_headers(raw: str | None) -> list[tuple[str, bytes]]:
    if not raw:
        return []
    return [(str(name), base64.b64decode(value)) for name, value in json.loads(raw)]


async def enqueue(
    conn: Any,
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
    validate_identifier(schema)
    if not conn.is_in_transaction():
        raise OutboxError("outbox.enqueue must run inside the caller's transaction")
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    size = len(key_bytes) + len(value or b"") + sum(len(n) + len(v) for n, v in headers)
    if size > max_record_bytes:
        raise InvalidInput(f"event of {size} bytes for {topic} exceeds the {max_record_bytes}-byte limit")
    event_id: int = await conn.fetchval(
        f"INSERT INTO {schema}.outbox (topic, key, value, headers)"
        " VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
        topic,
        key_bytes,
        value,
        _encode_headers(headers),
    )
    # Delivered at commit, and not at all on rollback.
    await conn.execute("SELECT pg_notify($1, '')", notify_channel(schema))
    return event_id


class OutboxRelay:
    """Publishes ``<schema>.outbox`` to Kafka; run one per replica, one relays at a time.

    ``run()`` loops until ``stop()``: it takes a session-level advisory lock (replicas that don't get
    it retry every ``lock_retry_interval`` seconds, so one takes over when the active one dies),
    LISTENs for ``enqueue``'s notifications and polls every ``poll_interval`` seconds as a fallback.
    When Kafka fails, the undelivered rows stay and are retried with exponential backoff, in order;
    when PostgreSQL goes away, it reconnects. It holds one pool connection while active.

    If ``producer`` has not been started (Kafka was down when the service started) the relay starts
    it, retrying; its owner still stops it.
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
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.schema = validate_identifier(schema)
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._lock_retry_interval = lock_retry_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._lock_key = advisory_lock_key("outbox", schema)
        self.is_active = False
        self.relayed = 0
        self.failures = 0
        self.last_error: str | None = None

    def stop(self) -> None:
        """Ask ``run()`` to return after the batch in flight (its rows are deleted or kept)."""
        self._stopping.set()

    async def backlog(self) -> int:
        """How many events wait in the outbox (for a gauge and for tests)."""
        count: int = await self._pool.fetchval(f"SELECT count(*) FROM {self.schema}.outbox")
        return count

    async def run(self) -> None:
        backoff = self._backoff_initial
        while not self._stopping.is_set():
            try:
                if not self._producer.started:
                    await self._producer.start()
                await self._run_with_connection()
                backoff = self._backoff_initial
            except KafkaError as e:
                self._note_failure("outbox_relay_kafka_unavailable", e)
                await self._pause(backoff)
                backoff = min(backoff * 2, self._backoff_max)
            except _DB_ERRORS as e:
                self._note_failure("outbox_relay_database_unavailable", e)
                await self._pause(backoff)
                backoff = min(backoff * 2, self._backoff_max)

    def _note_failure(self, event: str, error: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {error}"
        log.warning(event, schema=self.schema, error=self.last_error)

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early on ``stop()``."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _wait_for_work(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early on a notification or ``stop()``."""
        wake = asyncio.ensure_future(self._wake.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({wake, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (wake, stopping):
                f.cancel()
            await asyncio.gather(wake, stopping, return_exceptions=True)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()

    async def _run_with_connection(self) -> None:
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self._lock_key):
                log.debug("outbox_relay_standby", schema=self.schema)
                await self._pause(self._lock_retry_interval)
                return
            channel = notify_channel(self.schema)
            await conn.add_listener(channel, self._on_notify)
            self.is_active = True
            log.info("outbox_relay_active", schema=self.schema)
            try:
                await self._relay(conn)
            finally:
                self.is_active = False
                # On a healthy connection give the lock back now; the pool's reset would too.
                if not conn.is_closed():
                    await conn.remove_listener(channel, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock($1::bigint)", self._lock_key)

    async def _relay(self, conn: Any) -> None:
        backoff = self._backoff_initial
        while not self._stopping.is_set():
            self._wake.clear()
            rows = await conn.fetch(
                f"SELECT id, topic, key, value, headers FROM {self.schema}.outbox ORDER BY id LIMIT $1",
                self._batch_size,
            )
            if not rows:
                await self._wait_for_work(self._poll_interval)
                continue
            failed = await self._publish(conn, rows)
            if failed is None:
                backoff = self._backoff_initial
                continue
            self._note_failure("outbox_relay_send_failed", failed)
            await self._pause(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    async def _publish(self, conn: Any, rows: Sequence[Any]) -> KafkaError | None:
        """Send ``rows``; delete the delivered ones; return the first failure, if any."""
        messages = [
            OutgoingMessage(
                topic=r["topic"], key=bytes(r["key"]), value=r["value"], headers=_decode_headers(r["headers"])
            )
            for r in rows
        ]
        results = await self._producer.send_batch_settled(messages)
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
        retriable = [e for e in errors if isinstance(e, KafkaUnavailable)]
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
