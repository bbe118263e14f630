"""Postgres: posts and their transitions (with the status event in the same transaction), accounts and
tokens from Kafka, the rate-limit log and webhook de-duplication.

Every change to a post that a dashboard should see goes through :meth:`Repository.transition` or
:meth:`Repository.emit_update`, which bump ``seq`` and enqueue the status event in the transaction
that changes the row, so the row and the event commit together. Workers hold a lease on a post;
their writes check it, so a worker whose lease was taken over can no longer change the post.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from common.db import validate_identifier
from common.errors import PipelineError
from common.events import (
    AccessTokenData,
    AccountData,
    ErrorInfo,
    EventType,
    PostRequestedData,
    PostState,
    PostStatusData,
    Progress,
    RefreshRequestedData,
    encode,
)
from common.outbox import DEFAULT_MAX_RECORD_BYTES, enqueue
from publish_service.domain import rate_window
from publish_service.domain.states import check_transition


class LeaseLost(PipelineError):
    """Another worker owns the post now, or it moved on without us; stop working on it."""

    code = "lease_lost"


@dataclass(frozen=True)
class Topics:
    status: str
    dlq: str
    refresh: str
    requested: str


_COLUMNS = frozenset(
    {
        "attempt",
        "failures",
        "next_attempt_at",
        "media_size",
        "content_type",
        "duration_s",
        "chunk_size",
        "total_chunks",
        "publish_id",
        "upload_url",
        "upload_url_issued_at",
        "bytes_acked",
        "init_in_doubt",
        "init_sent_at",
        "tiktok_status",
        "polls",
        "tiktok_post_ids",
        "awaiting_post_id",
        "watch_until",
        "awaiting_token_version",
        "error_code",
        "error_message",
        "error_retryable",
        "error_log_id",
        "progress_emitted_at",
    }
)


@dataclass(frozen=True)
class PostRow:
    post_id: str
    account_id: str
    request: PostRequestedData
    state: PostState
    seq: int
    attempt: int
    failures: int
    correlation_id: str | None
    raw_event: bytes
    raw_key: bytes | None
    publish_at: datetime | None
    next_attempt_at: datetime
    media_size: int | None
    content_type: str | None
    duration_s: float | None
    chunk_size: int | None
    total_chunks: int | None
    publish_id: str | None
    upload_url: str | None
    upload_url_issued_at: datetime | None
    bytes_acked: int
    init_in_doubt: bool
    init_sent_at: datetime | None
    tiktok_status: str | None
    polls: int
    tiktok_post_ids: tuple[str, ...]
    awaiting_post_id: bool
    watch_until: datetime | None
    awaiting_token_version: int | None
    error_code: str | None
    error_message: str | None
    error_retryable: bool | None
    error_log_id: str | None
    progress_emitted_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> PostRow:
        return cls(
            post_id=r["post_id"],
            account_id=r["account_id"],
            request=PostRequestedData.model_validate_json(r["request"]),
            state=PostState(r["state"]),
            seq=r["seq"],
            attempt=r["attempt"],
            failures=r["failures"],
            correlation_id=r["correlation_id"],
            raw_event=bytes(r["raw_event"]),
            raw_key=bytes(r["raw_key"]) if r["raw_key"] is not None else None,
            publish_at=r["publish_at"],
            next_attempt_at=r["next_attempt_at"],
            media_size=r["media_size"],
            content_type=r["content_type"],
            duration_s=r["duration_s"],
            chunk_size=r["chunk_size"],
            total_chunks=r["total_chunks"],
            publish_id=r["publish_id"],
            upload_url=r["upload_url"],
            upload_url_issued_at=r["upload_url_issued_at"],
            bytes_acked=r["bytes_acked"],
            init_in_doubt=r["init_in_doubt"],
            init_sent_at=r["init_sent_at"],
            tiktok_status=r["tiktok_status"],
            polls=r["polls"],
            tiktok_post_ids=tuple(r["tiktok_post_ids"] or ()),
            awaiting_post_id=r["awaiting_post_id"],
            watch_until=r["watch_until"],
            awaiting_token_version=r["awaiting_token_version"],
            error_code=r["error_code"],
            error_message=r["error_message"],
            error_retryable=r["error_retryable"],
            error_log_id=r["error_log_id"],
            progress_emitted_at=r["progress_emitted_at"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )

    def public_view(self) -> dict[str, Any]:
        """What ``GET /v1/posts/{id}`` shows: state and TikTok ids, never the upload URL."""
        return {
            "post_id": self.post_id,
            "account_id": self.account_id,
            "state": self.state.value,
            "seq": self.seq,
            "attempt": self.attempt,
            "kind": self.request.kind.value,
            "mode": self.request.mode.value,
            "transfer": self.request.transfer.value,
            "publish_at": self.publish_at.isoformat() if self.publish_at else None,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "progress": {"bytes_sent": self.bytes_acked, "bytes_total": self.media_size}
            if self.media_size
            else None,
            "publish_id": self.publish_id,
            "tiktok_status": self.tiktok_status,
            "tiktok_post_ids": list(self.tiktok_post_ids),
            "awaiting_post_id": self.awaiting_post_id,
            "error": {
                "code": self.error_code,
                "message": self.error_message,
                "retryable": bool(self.error_retryable),
                "tiktok_log_id": self.error_log_id,
            }
            if self.error_code
            else None,
            "metadata": self.request.metadata,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class IntakeOutcome(StrEnum):
    created = "created"
    duplicate = "duplicate"  # same post_id, same payload: a no-op
    conflict = "conflict"  # same post_id, different payload: rejected


@dataclass(frozen=True)
class AccountToken:
    account_id: str
    status: str | None
    token_version: int
    ciphertext: str | None
    expires_at: datetime | None


def request_hash(post: PostRequestedData) -> str:
    canonical = json.dumps(post.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _dlq_headers(code: str, message: str, extra: Sequence[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    return [("error_code", code.encode()), ("error_message", message[:1000].encode()), *extra]


class Repository:
    def __init__(
        self,
        pool: Any,
        schema: str,
        topics: Topics,
        *,
        rate_window_s: float = rate_window.WINDOW_S,
        on_transition: Callable[[str], None] | None = None,
    ) -> None:
        self.pool = pool
        self._on_transition = on_transition
        self.rate_window_s = rate_window_s
        self.schema = validate_identifier(schema)
        self.topics = topics
        self._t = f"{self.schema}.posts"

    # ------------------------------------------------------------------------------ status events

    async def _emit(
        self,
        conn: Any,
        row: PostRow,
        *,
        progress: Progress | None = None,
        error: ErrorInfo | None = None,
        state: PostState | None = None,
        seq: int | None = None,
    ) -> None:
        if (
            error is None
            and row.error_code
            and (state or row.state) in (PostState.failed, PostState.rejected)
        ):
            error = ErrorInfo(
                code=row.error_code,
                message=row.error_message or "",
                retryable=bool(row.error_retryable),
                tiktok_log_id=row.error_log_id,
            )
        data = PostStatusData(
            post_id=row.post_id,
            account_id=row.account_id,
            seq=row.seq if seq is None else seq,
            state=state or row.state,
            attempt=row.attempt,
            progress=progress,
            publish_id=row.publish_id,
            tiktok_post_ids=list(row.tiktok_post_ids),
            error=error,
            metadata=row.request.metadata,
        )
        value, headers = encode(EventType.post_status, data, correlation_id=row.correlation_id)
        await enqueue(conn, self.schema, self.topics.status, row.post_id, value, headers)

    # ------------------------------------------------------------------------------ intake

    async def record_request(
        self,
        conn: Any,
        post: PostRequestedData,
        raw: bytes,
        correlation_id: str | None,
        key: bytes | None,
    ) -> IntakeOutcome:
        """Store a new post (state received, or scheduled) with its events; detect repeats. In ``conn``'s
        transaction."""
        digest = request_hash(post)
        inserted = await conn.fetchrow(
            f"""
            INSERT INTO {self._t} (post_id, account_id, request, request_hash, raw_event, correlation_id,
                                   state, seq, publish_at, next_attempt_at, raw_key)
            VALUES ($1, $2, $3::jsonb, $4, $5, $6, 'received', 1, $7,
                    greatest(now(), coalesce($7, now())), $8)
            ON CONFLICT (post_id) DO NOTHING
            RETURNING *
            """,
            post.post_id,
            post.account_id,
            post.model_dump_json(),
            digest,
            raw,
            correlation_id,
            post.publish_at,
            key,
        )
        if inserted is None:
            existing = await conn.fetchrow(
                f"SELECT * FROM {self._t} WHERE post_id = $1 FOR UPDATE", post.post_id
            )
            if existing["request_hash"] == digest:
                return IntakeOutcome.duplicate
            row = PostRow.from_record(existing)
            seq = await conn.fetchval(
                f"UPDATE {self._t} SET seq = seq + 1 WHERE post_id = $1 RETURNING seq", post.post_id
            )
            message = "this post_id was already used for a different request; the original post goes on"
            error = ErrorInfo(code="duplicate_post_id_conflict", message=message)
            await self._emit(conn, row, state=PostState.rejected, seq=seq, error=error)
            await enqueue(
                conn,
                self.schema,
                self.topics.dlq,
                key or post.account_id.encode(),
                raw,
                _dlq_headers("duplicate_post_id_conflict", message),
            )
            return IntakeOutcome.conflict
        row = PostRow.from_record(inserted)
        await self._emit(conn, row)
        self._counted(PostState.received.value)
        scheduled = await conn.fetchrow(
            f"""
            UPDATE {self._t} SET state = 'scheduled', seq = seq + 1, updated_at = now()
            WHERE post_id = $1 AND publish_at > now() RETURNING *
            """,
            post.post_id,
        )
        if scheduled is not None:
            await self._emit(conn, PostRow.from_record(scheduled))
            self._counted(PostState.scheduled.value)
        return IntakeOutcome.created

    async def reject_event(
        self,
        conn: Any,
        *,
        post_id: str,
        account_id: str,
        code: str,
        message: str,
        raw: bytes | None,
        key: bytes | None,
        correlation_id: str | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """A record we could not accept at all: a ``rejected`` status and the bytes to the DLQ."""
        data = PostStatusData(
            post_id=post_id,
            account_id=account_id,
            seq=1,
            state=PostState.rejected,
            error=ErrorInfo(code=code, message=message),
        )
        value, event_headers = encode(EventType.post_status, data, correlation_id=correlation_id)
        await enqueue(conn, self.schema, self.topics.status, post_id, value, event_headers)
        self._counted(PostState.rejected.value)
        dlq_headers = _dlq_headers(code, message, headers)
        size = len(key or b"") + len(raw or b"") + sum(len(n) + len(v) for n, v in dlq_headers)
        if size > DEFAULT_MAX_RECORD_BYTES:
            # A record near the broker's limit (value or key) cannot be copied with our headers; refusing
            # to would stall the consumer on it forever. The letter points at the original instead.
            original = len(key or b"") + len(raw or b"")
            note = f"; the original ({original} bytes) is too large to copy: read it at source_topic/offset"
            size_header = ("original_size", str(len(raw or b"")).encode())
            dlq_headers = _dlq_headers(code, message + note, [*headers, size_header])
            raw = None
            if len(key or b"") > DEFAULT_MAX_RECORD_BYTES // 2:
                key = b""
        await enqueue(conn, self.schema, self.topics.dlq, key or b"", raw, dlq_headers)

    # ------------------------------------------------------------------------------ claiming

    async def claim(self, owner: str, lease_s: float) -> PostRow | None:
        """Take one due post (``FOR UPDATE SKIP LOCKED``) and lease it to ``owner``."""
        record = await self.pool.fetchrow(
            f"""
            WITH due AS (
                SELECT post_id FROM {self._t}
                WHERE (state IN ('received', 'scheduled', 'validating', 'uploading', 'processing')
                       OR awaiting_post_id)
                  AND next_attempt_at <= now()
                  AND (lease_until IS NULL OR lease_until < now())
                ORDER BY next_attempt_at
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {self._t} p
            SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
            FROM due WHERE p.post_id = due.post_id
            RETURNING p.*
            """,
            owner,
            lease_s,
        )
        return PostRow.from_record(record) if record is not None else None

    def _sets(self, fields: Mapping[str, Any], start: int) -> tuple[str, list[Any]]:
        clauses, values = [], []
        for i, (name, value) in enumerate(fields.items(), start=start):
            if name not in _COLUMNS:
                raise ValueError(f"not an updatable post column: {name}")
            clauses.append(f"{name} = ${i}")
            values.append(list(value) if isinstance(value, tuple) else value)
        return "".join(f", {c}" for c in clauses), values

    async def save(self, row: PostRow, owner: str, lease_s: float, **fields: Any) -> PostRow:
        """Checkpoint fields and renew the lease; no event. Raises :class:`LeaseLost`."""
        sets, values = self._sets(fields, 5)
        record = await self.pool.fetchrow(
            f"""
            UPDATE {self._t} SET updated_at = now(), lease_until = now() + make_interval(secs => $3){sets}
            WHERE post_id = $1 AND lease_owner = $2 AND state = $4 RETURNING *
            """,
            row.post_id,
            owner,
            lease_s,
            row.state.value,
            *values,
        )
        if record is None:
            raise LeaseLost(f"post {row.post_id} is no longer leased to {owner}")
        return PostRow.from_record(record)

    async def transition(
        self,
        row: PostRow,
        target: PostState,
        *,
        owner: str | None,
        progress: Progress | None = None,
        error: ErrorInfo | None = None,
        conn: Any = None,
        **fields: Any,
    ) -> PostRow:
        """Move the post from ``row.state`` to ``target`` and emit the status event, atomically.

        With an ``owner`` the lease must still be theirs; without (webhooks), only the state is checked.
        """
        check_transition(row.state, target)
        if error is not None:
            fields = {
                "error_code": error.code,
                "error_message": error.message,
                "error_retryable": error.retryable,
                "error_log_id": error.tiktok_log_id,
                **fields,
            }
        sets, values = self._sets(fields, 5)
        owner_check = "AND lease_owner = $4" if owner is not None else "AND ($4::text IS NULL)"
        sql = f"""
            UPDATE {self._t} SET state = $2, seq = seq + 1, updated_at = now(){sets}
            WHERE post_id = $1 AND state = $3 {owner_check} RETURNING *
        """

        async def run(c: Any) -> PostRow:
            async with c.transaction():
                record = await c.fetchrow(sql, row.post_id, target.value, row.state.value, owner, *values)
                if record is None:
                    raise LeaseLost(f"post {row.post_id} moved on from {row.state} or changed owner")
                new = PostRow.from_record(record)
                await self._emit(c, new, progress=progress, error=error)
                if target is PostState.rejected:
                    await enqueue(
                        c,
                        self.schema,
                        self.topics.dlq,
                        new.raw_key if new.raw_key is not None else new.account_id,
                        new.raw_event,
                        _dlq_headers(new.error_code or "rejected", new.error_message or ""),
                    )
                return new

        if conn is not None:
            new = await run(conn)
        else:
            async with self.pool.acquire() as c:
                new = await run(c)
        self._counted(target.value)
        return new

    def _counted(self, state: str) -> None:
        if self._on_transition is not None:
            self._on_transition(state)

    async def count_by_state(self) -> dict[str, int]:
        rows = await self.pool.fetch(f"SELECT state, count(*) AS n FROM {self._t} GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    async def emit_update(
        self, row: PostRow, *, owner: str | None, progress: Progress | None = None, **fields: Any
    ) -> PostRow:
        """An event in the same state (upload progress, the public post id arrived)."""
        sets, values = self._sets(fields, 4)
        owner_check = "AND lease_owner = $3" if owner is not None else "AND ($3::text IS NULL)"
        async with self.pool.acquire() as c, c.transaction():
            record = await c.fetchrow(
                f"""
                UPDATE {self._t} SET seq = seq + 1, updated_at = now(){sets}
                WHERE post_id = $1 AND state = $2 {owner_check} RETURNING *
                """,
                row.post_id,
                row.state.value,
                owner,
                *values,
            )
            if record is None:
                raise LeaseLost(f"post {row.post_id} moved on or changed owner")
            new = PostRow.from_record(record)
            await self._emit(c, new, progress=progress)
            return new

    async def release(self, row: PostRow, owner: str, delay_s: float, **fields: Any) -> None:
        """Give the lease back; the post is due again in ``delay_s`` seconds."""
        sets, values = self._sets(fields, 4)
        await self.pool.execute(
            f"""
            UPDATE {self._t}
            SET lease_owner = NULL, lease_until = NULL, updated_at = now(),
                next_attempt_at = now() + make_interval(secs => $3){sets}
            WHERE post_id = $1 AND lease_owner = $2
            """,
            row.post_id,
            owner,
            delay_s,
            *values,
        )

    async def get(self, post_id: str) -> PostRow | None:
        if "\x00" in post_id:  # no stored id holds one (text cannot), and Postgres refuses the query
            return None
        record = await self.pool.fetchrow(f"SELECT * FROM {self._t} WHERE post_id = $1", post_id)
        return PostRow.from_record(record) if record is not None else None

    async def by_publish_id(self, publish_id: str) -> PostRow | None:
        if "\x00" in publish_id:
            return None
        record = await self.pool.fetchrow(f"SELECT * FROM {self._t} WHERE publish_id = $1", publish_id)
        return PostRow.from_record(record) if record is not None else None

    async def in_doubt_for(self, open_id: str) -> list[PostRow]:
        """Posts of the creator with this open_id whose PULL init lost its answer."""
        records = await self.pool.fetch(
            f"""
            SELECT p.* FROM {self._t} p JOIN {self.schema}.accounts a USING (account_id)
            WHERE a.open_id = $1 AND p.init_in_doubt AND p.publish_id IS NULL AND p.state = 'validating'
            """,
            open_id,
        )
        return [PostRow.from_record(r) for r in records]

    async def wake(self, post_id: str) -> None:
        """Make a post due now (a webhook said something happened)."""
        await self.pool.execute(
            f"UPDATE {self._t} SET next_attempt_at = now() WHERE post_id = $1 AND next_attempt_at > now()",
            post_id,
        )

    # ------------------------------------------------------------------------------ accounts/tokens

    async def upsert_token(self, data: AccessTokenData) -> bool:
        """Keep the newest token per account (by token_version); wake posts that waited for it."""
        async with self.pool.acquire() as c, c.transaction():
            updated = await c.fetchval(
                f"""
                INSERT INTO {self.schema}.accounts (account_id, open_id, scopes, token_version,
                                                    token_ciphertext, token_expires_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (account_id) DO UPDATE
                SET open_id = excluded.open_id, scopes = excluded.scopes,
                    token_version = excluded.token_version, token_ciphertext = excluded.token_ciphertext,
                    token_expires_at = excluded.token_expires_at, updated_at = now()
                WHERE {self.schema}.accounts.token_version < excluded.token_version
                   OR ({self.schema}.accounts.token_version = excluded.token_version
                       AND {self.schema}.accounts.token_ciphertext IS DISTINCT FROM excluded.token_ciphertext)
                RETURNING true
                """,
                data.account_id,
                data.open_id,
                list(data.scopes),
                data.token_version,
                data.ciphertext,
                data.expires_at,
            )
            if updated:
                await c.execute(
                    f"""
                    UPDATE {self._t} SET next_attempt_at = now(), awaiting_token_version = NULL
                    WHERE account_id = $1 AND awaiting_token_version IS NOT NULL
                      AND awaiting_token_version < $2
                    """,
                    data.account_id,
                    data.token_version,
                )
            return bool(updated)

    async def upsert_account(self, data: AccountData, partition: int, offset: int) -> bool:
        """Apply an account event unless a later one (by Kafka offset) was applied already."""
        updated = await self.pool.fetchval(
            f"""
            INSERT INTO {self.schema}.accounts (account_id, open_id, status, scopes, account_partition,
                                                account_offset)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (account_id) DO UPDATE
            SET open_id = excluded.open_id, status = excluded.status, scopes = excluded.scopes,
                account_partition = excluded.account_partition, account_offset = excluded.account_offset,
                updated_at = now()
            WHERE {self.schema}.accounts.account_offset IS NULL
               OR {self.schema}.accounts.account_partition IS DISTINCT FROM excluded.account_partition
               OR {self.schema}.accounts.account_offset < excluded.account_offset
            RETURNING true
            """,
            data.account_id,
            data.open_id,
            data.status.value,
            list(data.scopes),
            partition,
            offset,
        )
        return bool(updated)

    async def account_token(self, account_id: str) -> AccountToken | None:
        r = await self.pool.fetchrow(
            f"""SELECT account_id, status, token_version, token_ciphertext, token_expires_at
                FROM {self.schema}.accounts WHERE account_id = $1""",
            account_id,
        )
        if r is None:
            return None
        return AccountToken(
            r["account_id"], r["status"], r["token_version"], r["token_ciphertext"], r["token_expires_at"]
        )

    async def account_known(self, conn: Any, account_id: str) -> bool:
        found = await conn.fetchval(
            f"SELECT true FROM {self.schema}.accounts WHERE account_id = $1", account_id
        )
        return bool(found)

    async def request_refresh(self, account_id: str, seen_version: int, reason: str) -> bool:
        """Ask auth_service for a new token, once per seen version (repeated after 60 s of silence)."""
        async with self.pool.acquire() as c, c.transaction():
            asked = await c.fetchval(
                f"""
                UPDATE {self.schema}.accounts
                SET refresh_requested_version = $2, refresh_requested_at = now()
                WHERE account_id = $1 AND token_version <= $2
                  AND (refresh_requested_version IS DISTINCT FROM $2
                       OR refresh_requested_at < now() - interval '60 seconds')
                RETURNING true
                """,
                account_id,
                seen_version,
            )
            if not asked:
                return False
            data = RefreshRequestedData(account_id=account_id, reason=reason, seen_token_version=seen_version)
            value, headers = encode(EventType.refresh_requested, data)
            await enqueue(c, self.schema, self.topics.refresh, account_id, value, headers)
            return True

    # ------------------------------------------------------------------------------ rate limits

    async def acquire_slot(self, account_id: str, endpoint: rate_window.Endpoint) -> float:
        """Take a slot of the (account, endpoint) window; 0 when taken, else seconds to wait.

        An advisory transaction lock per (account, endpoint) serialises replicas; the database
        clock is the one clock they share.
        """
        limit = rate_window.LIMITS[endpoint]
        window = self.rate_window_s + rate_window.SAFETY_S
        async with self.pool.acquire() as c, c.transaction():
            await c.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{account_id}|{endpoint.value}"
            )
            now = await c.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
            stamps = await c.fetch(
                f"""SELECT extract(epoch FROM at)::float8 AS t FROM {self.schema}.rate_calls
                    WHERE account_id = $1 AND endpoint = $2 AND at > to_timestamp($3)""",
                account_id,
                endpoint.value,
                now - window,
            )
            decision = rate_window.decide([r["t"] for r in stamps], now, limit, window)
            if not decision.allowed:
                return decision.wait_s
            await c.execute(
                f"""INSERT INTO {self.schema}.rate_calls (account_id, endpoint, at)
                    VALUES ($1, $2, to_timestamp($3))""",
                account_id,
                endpoint.value,
                now,
            )
            await c.execute(
                f"""DELETE FROM {self.schema}.rate_calls
                    WHERE account_id = $1 AND endpoint = $2 AND at < to_timestamp($3)""",
                account_id,
                endpoint.value,
                now - 10 * window,
            )
            return 0.0

    # ------------------------------------------------------------------------------ webhooks

    async def first_delivery(self, dedupe_key: str) -> bool:
        inserted = await self.pool.fetchval(
            f"""INSERT INTO {self.schema}.webhook_events (dedupe_key) VALUES ($1)
                ON CONFLICT DO NOTHING RETURNING true""",
            dedupe_key,
        )
        return bool(inserted)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")


def is_unique_violation(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.UniqueViolationError)
