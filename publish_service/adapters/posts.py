"""Posts and their transitions, with the status event enqueued in the transaction that changes the row.

Every change a dashboard should see goes through :meth:`Posts.transition` or :meth:`Posts.emit_update`,
which bump ``seq`` and enqueue the status event with the row change, so both commit together: in one
statement when the worker's copy of the row is current (the common case: one round trip), else in a
transaction that reads the row first. Workers hold a lease on a post; their writes check it, so a
worker whose lease was taken over can no longer change the post. Every method takes the connection
(or pool) to run on: see ``Repository``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from common.events import ErrorInfo, PostRequestedData, PostState, Progress
from common.outbox import change_and_enqueue
from common.tracing import current_carrier
from publish_service.adapters.dead_letters import DeadLetters
from publish_service.adapters.pg import Connection, Executor, LeaseLost, post_row, set_clauses
from publish_service.adapters.status_events import StatusEvents
from publish_service.domain.post import IntakeOutcome, PostPatch, PostRow, request_hash
from publish_service.domain.states import check_transition


def _error_patch(error: ErrorInfo) -> PostPatch:
    return PostPatch(
        error_code=error.code,
        error_message=error.message,
        error_retryable=error.retryable,
        error_log_id=error.tiktok_log_id,
    )


def _current_trace() -> str | None:
    """The request's trace (the intake span continuing the producer's), stored for the worker."""
    carrier = current_carrier()
    return json.dumps(carrier) if carrier else None


class Posts:
    def __init__(
        self,
        schema: str,
        status_topic: str,
        dead_letters: DeadLetters,
        on_transition: Callable[[str], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self._schema = schema
        self._t = f"{schema}.posts"
        self._dead_letters = dead_letters
        self.events = StatusEvents(schema, status_topic, on_transition, on_error)

    # ------------------------------------------------------------------------------ intake

    async def record_request(
        self, db: Executor, post: PostRequestedData, raw: bytes, correlation_id: str | None, key: bytes | None
    ) -> IntakeOutcome:
        """Store a new post (state received, or scheduled) with its events; detect repeats. In ``db``'s
        transaction."""
        digest = request_hash(post)
        inserted = await db.fetchrow(
            f"""
            INSERT INTO {self._t} (post_id, account_id, request, request_hash, raw_event, correlation_id,
                                   state, seq, publish_at, next_attempt_at, raw_key, trace_context)
            VALUES ($1, $2, $3::jsonb, $4, $5, $6, 'received', 1, $7,
                    greatest(now(), coalesce($7, now())), $8, $9::jsonb)
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
            _current_trace(),
        )
        if inserted is None:
            existing = await db.fetchrow(
                f"SELECT * FROM {self._t} WHERE post_id = $1 FOR UPDATE", post.post_id
            )
            if existing["request_hash"] == digest:
                return IntakeOutcome.duplicate
            row = post_row(existing)
            seq = await db.fetchval(
                f"UPDATE {self._t} SET seq = seq + 1 WHERE post_id = $1 RETURNING seq", post.post_id
            )
            message = "this post_id was already used for a different request; the original post goes on"
            error = ErrorInfo(code="duplicate_post_id_conflict", message=message)
            await self.events.emit(db, row, state=PostState.rejected, seq=seq, error=error)
            await self._dead_letters.send(
                db, key or post.account_id.encode(), raw, "duplicate_post_id_conflict", message
            )
            return IntakeOutcome.conflict
        row = post_row(inserted)
        await self.events.emit(db, row)
        self.events.counted(PostState.received.value)
        scheduled = await db.fetchrow(
            f"""
            UPDATE {self._t} SET state = 'scheduled', seq = seq + 1, updated_at = now()
            WHERE post_id = $1 AND publish_at > now() RETURNING *
            """,
            post.post_id,
        )
        if scheduled is not None:
            await self.events.emit(db, post_row(scheduled))
            self.events.counted(PostState.scheduled.value)
        return IntakeOutcome.created

    # ------------------------------------------------------------------------------ leases

    async def claim(self, db: Executor, owner: str, lease_s: float) -> PostRow | None:
        """Take one due post (``FOR UPDATE SKIP LOCKED``) and lease it to ``owner``."""
        record = await db.fetchrow(
            f"""
            WITH due AS (
                SELECT post_id FROM {self._t}
                WHERE (state IN ('received', 'scheduled', 'validating', 'uploading', 'processing')
                       OR awaiting_post_id
                       OR (state = 'inbox_delivered' AND watch_until IS NOT NULL))
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
        return post_row(record) if record is not None else None

    async def next_due_in(self, db: Executor) -> float | None:
        """Seconds until the earliest unleased post falls due (<= 0: now); None when none waits."""
        seconds = await db.fetchval(
            f"""
            SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM {self._t}
            WHERE (state IN ('received', 'scheduled', 'validating', 'uploading', 'processing')
                   OR awaiting_post_id)
              AND lease_until IS NULL
            ORDER BY next_attempt_at
            LIMIT 1
            """
        )
        return float(seconds) if seconds is not None else None

    async def save(self, db: Executor, row: PostRow, owner: str, lease_s: float, patch: PostPatch) -> PostRow:
        """Checkpoint columns and renew the lease; no event. Raises :class:`LeaseLost`."""
        sets, values = set_clauses(patch, 5)
        record = await db.fetchrow(
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
        return post_row(record)

    async def release(self, db: Executor, row: PostRow, owner: str, delay_s: float, patch: PostPatch) -> None:
        """Give the lease back; the post is due again in ``delay_s`` seconds."""
        sets, values = set_clauses(patch, 4)
        await db.execute(
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

    # ------------------------------------------------------------------------------ transitions

    async def transition(
        self,
        db: Connection,
        row: PostRow,
        target: PostState,
        *,
        owner: str | None,
        progress: Progress | None,
        error: ErrorInfo | None,
        patch: PostPatch,
    ) -> PostRow:
        """Move the post from ``row.state`` to ``target`` and emit the status event, atomically.

        With an ``owner`` the lease must still be theirs; without (webhooks, cancel), only the state is
        checked.
        """
        check_transition(row.state, target)
        if error is not None:
            merged = _error_patch(error)
            merged.update(patch)
            patch = merged
        new = await self._change(db, row, target, owner=owner, progress=progress, error=error, patch=patch)
        self.events.counted(target.value)
        return new

    async def emit_update(
        self, db: Connection, row: PostRow, *, owner: str | None, progress: Progress | None, patch: PostPatch
    ) -> PostRow:
        """An event in the same state (upload progress, the public post id arrived)."""
        return await self._change(db, row, row.state, owner=owner, progress=progress, error=None, patch=patch)

    async def _change(
        self,
        db: Connection,
        row: PostRow,
        target: PostState,
        *,
        owner: str | None,
        progress: Progress | None,
        error: ErrorInfo | None,
        patch: PostPatch,
    ) -> PostRow:
        """``row`` to ``target`` (its own state for an update), seq bumped, with its status event: in
        one statement when the row is current, else in a transaction that reads it first (that one
        also sends a rejection's dead letter; failures and rejections always take it)."""
        if target not in (PostState.rejected, PostState.failed):  # those also count errors, dead-letter
            expected = replace(row, state=target, seq=row.seq + 1, **patch)
            new = await self._change_in_one(db, row, expected, patch, owner=owner, progress=progress)
            if new is not None:
                return new
        sets, values = set_clauses(patch, 5)
        owner_check = "AND lease_owner = $4" if owner is not None else "AND ($4::text IS NULL)"
        async with db.transaction():
            record = await db.fetchrow(
                f"""
                UPDATE {self._t} SET state = $2, seq = seq + 1, updated_at = now(){sets}
                WHERE post_id = $1 AND state = $3 {owner_check} RETURNING *
                """,
                row.post_id,
                target.value,
                row.state.value,
                owner,
                *values,
            )
            if record is None:
                raise LeaseLost(f"post {row.post_id} moved on from {row.state} or changed owner")
            new = post_row(record)
            await self.events.emit(db, new, progress=progress, error=error)
            if target is PostState.rejected and row.state is not PostState.rejected:  # entering it
                await self._dead_letters.send(
                    db,
                    new.raw_key if new.raw_key is not None else new.account_id,
                    new.raw_event,
                    new.error_code or "rejected",
                    new.error_message or "",
                )
        return new

    async def _change_in_one(
        self,
        db: Executor,
        row: PostRow,
        expected: PostRow,
        patch: PostPatch,
        *,
        owner: str | None,
        progress: Progress | None,
    ) -> PostRow | None:
        """``row`` becomes ``expected`` and ``expected``'s status event is enqueued, in one statement,
        if the table still holds ``row``'s state and seq (and lease, with an ``owner``): every change to
        what the event carries either bumps seq or is the lease holder's own. None when it does not
        (another change came first, or the lease is gone): the caller reads and decides."""
        sets, values = set_clauses(patch, 6)
        owner_check = "AND lease_owner = $4" if owner is not None else "AND ($4::text IS NULL)"
        change = f"""
            UPDATE {self._t} SET state = $2, seq = $3 + 1, updated_at = now(){sets}
            WHERE post_id = $1 AND state = $5 AND seq = $3 {owner_check} RETURNING *
            """
        args: list[Any] = [row.post_id, expected.state.value, row.seq, owner, row.state.value, *values]
        event = self.events.status_event(expected, progress=progress)
        record = await change_and_enqueue(db, self._schema, change, args, event)
        return post_row(record) if record is not None else None

    # ------------------------------------------------------------------------------ reads

    async def get(self, db: Executor, post_id: str) -> PostRow | None:
        if "\x00" in post_id:  # no stored id holds one (text cannot), and Postgres refuses the query
            return None
        record = await db.fetchrow(f"SELECT * FROM {self._t} WHERE post_id = $1", post_id)
        return post_row(record) if record is not None else None

    async def by_publish_id(self, db: Executor, publish_id: str) -> PostRow | None:
        if "\x00" in publish_id:
            return None
        record = await db.fetchrow(f"SELECT * FROM {self._t} WHERE publish_id = $1", publish_id)
        return post_row(record) if record is not None else None

    async def in_doubt_for(self, db: Executor, open_id: str) -> list[PostRow]:
        """Posts of the creator with this open_id whose PULL init lost its answer."""
        records = await db.fetch(
            f"""
            SELECT p.* FROM {self._t} p JOIN {self._schema}.accounts a USING (account_id)
            WHERE a.open_id = $1 AND p.init_in_doubt AND p.publish_id IS NULL AND p.state = 'validating'
            """,
            open_id,
        )
        return [post_row(r) for r in records]

    async def wake(self, db: Executor, post_id: str) -> None:
        """Make a post due now (a webhook said something happened)."""
        await db.execute(
            f"UPDATE {self._t} SET next_attempt_at = now() WHERE post_id = $1 AND next_attempt_at > now()",
            post_id,
        )

    async def oldest_by_state(self, db: Executor) -> dict[str, float]:
        """Seconds since the least recently changed post of each unfinished state changed (0: none)."""
        rows = await db.fetch(
            f"""
            SELECT s.state, coalesce(extract(epoch FROM now() - min(p.updated_at)), 0)::float8 AS age
            FROM unnest($1::text[]) AS s(state) LEFT JOIN {self._t} p ON p.state = s.state
            GROUP BY s.state
            """,
            [s.value for s in PostState if not s.terminal],
        )
        return {r["state"]: float(r["age"]) for r in rows}

    async def count_by_state(self, db: Executor) -> dict[str, int]:
        rows = await db.fetch(f"SELECT state, count(*) AS n FROM {self._t} GROUP BY state")
        return {r["state"]: r["n"] for r in rows}
