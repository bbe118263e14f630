"""Intake's batch: every new request of a Kafka batch stored with one multi-row insert, and every
status event and dead letter the batch makes with one outbox insert.

Per request the outcome is the one :meth:`Posts.record_request` gives a record alone: a new post
(``received``, then ``scheduled`` if its ``publish_at`` is ahead), a repeat with the same payload (a
no-op), or a repeat with a different one (the original goes on; a ``rejected`` status event and a dead
letter). A post_id that comes twice in one batch is inserted once, and its later copies are repeats.
Each post's events are enqueued in the order they happened, in one statement, so their outbox ids
(and so their order on the topic) follow it. Each request's trace context (``PostRequest.trace_context``)
is stored with its post (for the worker's spans) and with each outbox row it causes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from common.events import ErrorInfo, PostState
from common.outbox import OutboxRecord, enqueue_many
from publish_service.adapters.dead_letters import DeadLetters
from publish_service.adapters.pg import Executor, post_row
from publish_service.adapters.posts import Posts
from publish_service.domain.post import IntakeOutcome, PostRequest, PostRow, request_hash

CONFLICT = "duplicate_post_id_conflict"
CONFLICT_MESSAGE = "this post_id was already used for a different request; the original post goes on"


class Requests:
    def __init__(self, schema: str, posts: Posts, dead_letters: DeadLetters) -> None:
        self._schema = schema
        self._t = f"{schema}.posts"
        self._posts = posts
        self._dead_letters = dead_letters

    async def record(self, db: Executor, requests: Sequence[PostRequest]) -> list[IntakeOutcome]:
        """Store ``requests`` (in ``db``'s transaction); the outcome of each, in their order."""
        if not requests:
            return []
        hashes = [request_hash(r.post) for r in requests]
        first: dict[str, int] = {}
        for i, r in enumerate(requests):
            first.setdefault(r.post.post_id, i)
        created = await self._insert(db, [(requests[i], hashes[i]) for i in first.values()])
        repeats = {r.post.post_id for i, r in enumerate(requests) if first[r.post.post_id] != i}
        repeats |= {r.post.post_id for r in requests if r.post.post_id not in created}
        stored = await self._lock(db, repeats)

        events: list[OutboxRecord] = []
        outcomes: list[IntakeOutcome] = []
        for i, r in enumerate(requests):
            post_id = r.post.post_id
            if first[post_id] == i and post_id in created:
                scheduled = created[post_id] == PostState.scheduled
                events.extend(
                    self._posts.events.first_events(
                        r.post, r.correlation_id, scheduled=scheduled, trace_context=r.trace_context
                    )
                )
                outcomes.append(IntakeOutcome.created)
            elif stored[post_id][1] == hashes[i]:
                outcomes.append(IntakeOutcome.duplicate)
            else:
                events.extend(await self._conflict(db, stored[post_id][0], r))
                outcomes.append(IntakeOutcome.conflict)
        await enqueue_many(db, self._schema, events)
        return outcomes

    async def _insert(self, db: Executor, new: list[tuple[PostRequest, str]]) -> dict[str, PostState]:
        """Insert the posts whose id is not taken yet; the state of each inserted, by post_id."""
        records = await db.fetch(
            f"""
            INSERT INTO {self._t} (post_id, account_id, request, request_hash, raw_event, correlation_id,
                                   state, seq, publish_at, next_attempt_at, raw_key, trace_context)
            SELECT u.post_id, u.account_id, u.request::jsonb, u.request_hash, u.raw_event, u.correlation_id,
                   CASE WHEN u.publish_at > now() THEN 'scheduled' ELSE 'received' END,
                   CASE WHEN u.publish_at > now() THEN 2 ELSE 1 END,
                   u.publish_at, greatest(now(), coalesce(u.publish_at, now())), u.raw_key,
                   u.trace_context::jsonb
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[],
                        $7::timestamptz[], $8::bytea[], $9::text[])
                 WITH ORDINALITY AS u(post_id, account_id, request, request_hash, raw_event, correlation_id,
                                      publish_at, raw_key, trace_context, n)
            ORDER BY u.n
            ON CONFLICT (post_id) DO NOTHING
            RETURNING post_id, state
            """,
            [r.post.post_id for r, _ in new],
            [r.post.account_id for r, _ in new],
            [r.post.model_dump_json() for r, _ in new],
            [digest for _, digest in new],
            [r.raw for r, _ in new],
            [r.correlation_id for r, _ in new],
            [r.post.publish_at for r, _ in new],
            [r.key for r, _ in new],
            [json.dumps(r.trace_context) if r.trace_context else None for r, _ in new],
        )
        return {r["post_id"]: PostState(r["state"]) for r in records}

    async def _lock(self, db: Executor, post_ids: set[str]) -> dict[str, tuple[PostRow, str]]:
        """The stored rows (and request hashes) of the repeated post_ids, locked for this transaction."""
        if not post_ids:
            return {}
        records = await db.fetch(
            f"SELECT * FROM {self._t} WHERE post_id = ANY($1::text[]) ORDER BY post_id FOR UPDATE",
            sorted(post_ids),
        )
        return {r["post_id"]: (post_row(r), r["request_hash"]) for r in records}

    async def _conflict(self, db: Executor, row: PostRow, request: PostRequest) -> list[OutboxRecord]:
        seq = await db.fetchval(
            f"UPDATE {self._t} SET seq = seq + 1 WHERE post_id = $1 RETURNING seq", row.post_id
        )
        error = ErrorInfo(code=CONFLICT, message=CONFLICT_MESSAGE)
        events = [
            self._posts.events.status_event(row, state=PostState.rejected, seq=seq, error=error),
            self._dead_letters.letter(
                request.key or request.post.account_id.encode(), request.raw, CONFLICT, CONFLICT_MESSAGE
            ),
        ]
        # Both belong to the conflicting request's trace (not the original post's).
        return [replace(e, trace_context=request.trace_context or {}) for e in events]
