"""The transactional outbox: events are written with the state change, and relayed to Kafka after.

A handler calls ``enqueue`` inside the transaction that changes its rows (or ``change_and_enqueue``,
which makes the change and adds the event in one statement), so the event exists if and only if the
change committed. ``common.outbox_relay.OutboxRelay`` sends the table to Kafka in id order and
deletes what Kafka acknowledged. Delivery is at least once: a crash between the acknowledgement and
the delete sends those events again, and consumers drop repeats by ``event_id``.

Each service's first migration creates the table; ``outbox_ddl(schema)`` is its one definition
(``tests/common/test_outbox.py`` checks that both services' migrations create exactly this table).

Ordering: rows of one Kafka partition (so of one key) reach Kafka in id order. Ids are taken at
insert, not at commit, so two transactions that write events for the same key must be serialised
by the caller (they normally are: both lock the same account or post row).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.db import Connection, validate_identifier
from common.errors import InvalidInput, PipelineError
from common.tracing import current_carrier

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "OutboxError",
    "OutboxRecord",
    "change_and_enqueue",
    "decode_headers",
    "enqueue",
    "enqueue_many",
    "notify_channel",
    "outbox_ddl",
    "outbox_trace_ddl",
]

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024


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


def decode_headers(raw: str | None) -> list[tuple[str, bytes]]:
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
    if not conn.is_in_transaction():
        raise OutboxError("outbox.enqueue must run inside the caller's transaction")
    return _encoded(schema, record, max_record_bytes)


def _encoded(schema: str, record: OutboxRecord, max_record_bytes: int) -> tuple[bytes, str]:
    validate_identifier(schema)
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


async def change_and_enqueue(
    db: Any,
    schema: str,
    change: str,
    args: Sequence[Any],
    record: OutboxRecord,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Any:
    """Run ``change`` and, if it returned a row, add ``record`` to the outbox: one statement, one
    round trip, atomic without a transaction of the caller's. The changed row, or None when the
    change matched nothing (then nothing was added and nobody woken).

    ``change`` is one ``UPDATE ... RETURNING`` (or ``INSERT``) whose parameters are ``$1..$n`` with
    ``args``. ``record`` is built before the change runs, so the change must be guarded on the row
    being exactly what the record was built from (a version column); on a miss, read and try again.
    """
    key_bytes, headers = _encoded(schema, record, max_record_bytes)
    carrier = current_carrier()
    n = len(args)
    # A data-modifying WITH runs once, whatever reads it; the notification is one per added row
    # (none when the change matched nothing) and, as for enqueue, is delivered at commit.
    statement = (
        f"WITH changed AS ({change}),"
        f" added AS (INSERT INTO {schema}.outbox (topic, key, value, headers, trace_context)"
        f" SELECT ${n + 1}, ${n + 2}, ${n + 3}, ${n + 4}::jsonb, ${n + 5}::jsonb FROM changed RETURNING id)"
        f" SELECT changed.* FROM changed, (SELECT pg_notify(${n + 6}, '') FROM added) AS woken"
    )
    return await db.fetchrow(
        statement,
        *args,
        record.topic,
        key_bytes,
        record.value,
        headers,
        json.dumps(carrier) if carrier else None,
        notify_channel(schema),
    )
