"""Postgres for insights: the metrics schedule (``metric_slots``), the posts it covers
(``post_insights``) and the account stats rows (``account_insights``), with their events written
to the outbox in the same transaction as the row that says they are done.

Each scheduled fetch happens once across replicas: rows are claimed with a lease under
``FOR UPDATE SKIP LOCKED`` (as posts are), and a row is finished only by the lease's owner.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.db import validate_identifier
from common.events import (
    AccountStatsData,
    EventType,
    InsightsUnavailable,
    PostMetricsData,
    encode,
)
from common.outbox import enqueue


@dataclass(frozen=True)
class DueSlot:
    post_id: str
    slot: int
    account_id: str
    video_id: str
    after_s: float
    attempts: int
    scope_reported: bool


@dataclass(frozen=True)
class SlotResult:
    """What becomes of one claimed slot: an event (``data``) or none, and whether the post's later
    slots end with it."""

    slot: DueSlot
    data: PostMetricsData | None
    outcome: str
    end_post: bool = False


@dataclass(frozen=True)
class DueAccount:
    account_id: str
    scopes: tuple[str, ...]
    attempts: int
    scope_reported: bool


class InsightsRepository:
    def __init__(self, pool: Any, schema: str, *, metrics_topic: str, stats_topic: str) -> None:
        self._pool = pool
        self._s = validate_identifier(schema)
        self._metrics_topic = metrics_topic
        self._stats_topic = stats_topic

    # ------------------------------------------------------------------ planning

    async def plan(self, schedule_s: Sequence[float], limit: int = 1000) -> int:
        """Schedule the slots of posts that reached ``published`` with a public id; returns how many
        posts were added. Idempotent: replicas may run it at the same time."""
        async with self._pool.acquire() as conn, conn.transaction():
            return int(
                await conn.fetchval(
                    f"""
                WITH fresh AS (
                    INSERT INTO {self._s}.post_insights (post_id, account_id, video_id, published_at)
                    SELECT p.post_id, p.account_id, p.tiktok_post_ids[1], least(p.updated_at, now())
                    FROM {self._s}.posts p
                    WHERE p.state = 'published' AND cardinality(p.tiktok_post_ids) > 0
                      AND NOT EXISTS (SELECT 1 FROM {self._s}.post_insights i WHERE i.post_id = p.post_id)
                    ORDER BY p.updated_at
                    LIMIT $2
                    ON CONFLICT DO NOTHING
                    RETURNING post_id, account_id, video_id, published_at
                ), slots AS (
                    INSERT INTO {self._s}.metric_slots (post_id, slot, account_id, video_id, after_s, due_at)
                    SELECT f.post_id, (s.ord - 1)::int, f.account_id, f.video_id, s.after_s,
                           f.published_at + make_interval(secs => s.after_s)
                    FROM fresh f CROSS JOIN unnest($1::float8[]) WITH ORDINALITY AS s(after_s, ord)
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                SELECT count(*) FROM fresh
                """,
                    list(schedule_s),
                    limit,
                )
            )

    async def plan_accounts(self) -> None:
        """An account that is (re)connected, or whose scopes changed, is due for stats now."""
        await self._pool.execute(
            f"""
            INSERT INTO {self._s}.account_insights (account_id, status, scopes, due_at)
            SELECT a.account_id, a.status, a.scopes, now() FROM {self._s}.accounts a
            WHERE a.status IS NOT NULL
            ON CONFLICT (account_id) DO UPDATE
            SET status = EXCLUDED.status,
                scopes = EXCLUDED.scopes,
                due_at = CASE WHEN EXCLUDED.status = 'connected'
                               AND (account_insights.status IS DISTINCT FROM 'connected'
                                    OR account_insights.scopes IS DISTINCT FROM EXCLUDED.scopes)
                              THEN now() ELSE account_insights.due_at END,
                scope_reported = account_insights.scope_reported
                                 AND account_insights.scopes IS NOT DISTINCT FROM EXCLUDED.scopes
            WHERE account_insights.status IS DISTINCT FROM EXCLUDED.status
               OR account_insights.scopes IS DISTINCT FROM EXCLUDED.scopes
            """
        )

    # ------------------------------------------------------------------ post metrics

    async def claim_slots(self, owner: str, lease_s: float, limit: int) -> list[DueSlot]:
        """Due slots of one account (the one waiting longest), at most ``limit``, leased to ``owner``."""
        rows = await self._pool.fetch(
            f"""
            WITH acct AS (
                SELECT account_id FROM {self._s}.metric_slots
                WHERE done_at IS NULL AND due_at <= now() AND (lease_until IS NULL OR lease_until < now())
                ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED
            ), picked AS (
                SELECT m.post_id, m.slot FROM {self._s}.metric_slots m JOIN acct USING (account_id)
                WHERE m.done_at IS NULL AND m.due_at <= now()
                  AND (m.lease_until IS NULL OR m.lease_until < now())
                ORDER BY m.due_at, m.post_id, m.slot LIMIT $3 FOR UPDATE OF m SKIP LOCKED
            )
            UPDATE {self._s}.metric_slots m
            SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
            FROM picked, {self._s}.post_insights i
            WHERE m.post_id = picked.post_id AND m.slot = picked.slot AND i.post_id = m.post_id
            RETURNING m.post_id, m.slot, m.account_id, m.video_id, m.after_s, m.attempts, i.scope_reported
            """,
            owner,
            lease_s,
            limit,
        )
        return [
            DueSlot(
                r["post_id"],
                r["slot"],
                r["account_id"],
                r["video_id"],
                r["after_s"],
                r["attempts"],
                r["scope_reported"],
            )
            for r in rows
        ]

    async def release_slots(
        self, slots: Sequence[DueSlot], owner: str, delay_s: float, *, failed: bool
    ) -> None:
        """Give the leases back; due again in ``delay_s`` (a failed query counts an attempt)."""
        await self._pool.execute(
            f"""
            UPDATE {self._s}.metric_slots
            SET lease_owner = NULL, lease_until = NULL, due_at = now() + make_interval(secs => $3),
                attempts = attempts + $4
            WHERE (post_id, slot) IN (SELECT * FROM unnest($1::text[], $2::int[])) AND lease_owner = $5
              AND done_at IS NULL
            """,
            [s.post_id for s in slots],
            [s.slot for s in slots],
            delay_s,
            1 if failed else 0,
            owner,
        )

    async def metadata(self, post_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        rows = await self._pool.fetch(
            f"SELECT post_id, request->'metadata' AS m FROM {self._s}.posts WHERE post_id = ANY($1::text[])",
            list(post_ids),
        )
        out: dict[str, dict[str, Any] | None] = {}
        for r in rows:
            raw = r["m"]
            value = json.loads(raw) if isinstance(raw, str) else raw
            out[r["post_id"]] = value if isinstance(value, dict) else None
        return out

    async def finish_slots(self, results: Sequence[SlotResult], owner: str) -> int:
        """Mark each slot done and write its event, in one transaction; slots whose lease was lost
        (another replica took them over) are left alone. Returns the number of events written."""
        written = 0
        async with self._pool.acquire() as conn, conn.transaction():
            for result in results:
                slot = result.slot
                done = await conn.fetchval(
                    f"""UPDATE {self._s}.metric_slots
                        SET done_at = now(), outcome = $3, lease_owner = NULL, lease_until = NULL
                        WHERE post_id = $1 AND slot = $2 AND lease_owner = $4 AND done_at IS NULL
                        RETURNING true""",
                    slot.post_id,
                    slot.slot,
                    result.outcome,
                    owner,
                )
                if not done:
                    continue
                data = result.data
                if data is not None:
                    value, headers = encode(EventType.post_metrics, data)
                    await enqueue(conn, self._s, self._metrics_topic, slot.post_id, value, headers)
                    written += 1
                    if data.view_count is not None:
                        await conn.execute(
                            f"""UPDATE {self._s}.post_insights
                                SET view_count = $2, like_count = $3, comment_count = $4, share_count = $5,
                                    fetched_at = $6
                                WHERE post_id = $1 AND (fetched_at IS NULL OR fetched_at <= $6)""",
                            slot.post_id,
                            data.view_count,
                            data.like_count,
                            data.comment_count,
                            data.share_count,
                            data.fetched_at,
                        )
                    if data.insights_unavailable is InsightsUnavailable.scope_missing:
                        await conn.execute(
                            f"UPDATE {self._s}.post_insights SET scope_reported = true WHERE post_id = $1",
                            slot.post_id,
                        )
                if result.end_post:
                    await conn.execute(
                        f"""UPDATE {self._s}.metric_slots SET done_at = now(), outcome = 'ended'
                            WHERE post_id = $1 AND done_at IS NULL AND slot > $2""",
                        slot.post_id,
                        slot.slot,
                    )
        return written

    async def series(self, post_id: str) -> list[Mapping[str, Any]]:
        rows = await self._pool.fetch(
            f"""SELECT s.slot, s.after_s, s.due_at, s.done_at, s.outcome
                FROM {self._s}.metric_slots s WHERE s.post_id = $1 ORDER BY s.slot""",
            post_id,
        )
        return [dict(r) for r in rows]

    async def latest_by_account(self) -> dict[str, tuple[int, int]]:
        """Views and likes per known account: the sum of its posts' latest counts, 0 before any (gauges)."""
        rows = await self._pool.fetch(
            f"""SELECT a.account_id, coalesce(sum(i.view_count), 0)::bigint AS views,
                       coalesce(sum(i.like_count), 0)::bigint AS likes
                FROM {self._s}.account_insights a
                LEFT JOIN {self._s}.post_insights i ON i.account_id = a.account_id
                GROUP BY a.account_id"""
        )
        return {r["account_id"]: (r["views"], r["likes"]) for r in rows}

    # ------------------------------------------------------------------ account stats

    async def claim_account(self, owner: str, lease_s: float) -> DueAccount | None:
        r = await self._pool.fetchrow(
            f"""
            WITH picked AS (
                SELECT account_id FROM {self._s}.account_insights
                WHERE status = 'connected' AND due_at <= now()
                  AND (lease_until IS NULL OR lease_until < now())
                ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED
            )
            UPDATE {self._s}.account_insights a
            SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
            FROM picked WHERE a.account_id = picked.account_id
            RETURNING a.account_id, a.scopes, a.attempts, a.scope_reported
            """,
            owner,
            lease_s,
        )
        if r is None:
            return None
        return DueAccount(r["account_id"], tuple(r["scopes"]), r["attempts"], r["scope_reported"])

    async def release_account(self, account_id: str, owner: str, delay_s: float, *, failed: bool) -> None:
        await self._pool.execute(
            f"""UPDATE {self._s}.account_insights
                SET lease_owner = NULL, lease_until = NULL, due_at = now() + make_interval(secs => $3),
                    attempts = attempts + $4
                WHERE account_id = $1 AND lease_owner = $2""",
            account_id,
            owner,
            delay_s,
            1 if failed else 0,
        )

    async def finish_account(
        self, account_id: str, owner: str, data: AccountStatsData | None, next_in_s: float
    ) -> bool:
        """Write the stats event (if any) and schedule the next fetch; False when the lease was lost."""
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                f"""UPDATE {self._s}.account_insights
                    SET lease_owner = NULL, lease_until = NULL, attempts = 0,
                        due_at = now() + make_interval(secs => $3),
                        scope_reported = scope_reported OR $4
                    WHERE account_id = $1 AND lease_owner = $2
                    RETURNING true""",
                account_id,
                owner,
                next_in_s,
                data is not None and data.insights_unavailable is InsightsUnavailable.scope_missing,
            )
            if not done:
                return False
            if data is not None:
                value, headers = encode(EventType.account_stats, data)
                await enqueue(conn, self._s, self._stats_topic, account_id, value, headers)
                if data.follower_count is not None:
                    await conn.execute(
                        f"""UPDATE {self._s}.account_insights
                            SET follower_count = $2, following_count = $3, likes_count = $4,
                                video_count = $5, fetched_at = $6
                            WHERE account_id = $1""",
                        account_id,
                        data.follower_count,
                        data.following_count,
                        data.likes_count,
                        data.video_count,
                        data.fetched_at,
                    )
            return True
