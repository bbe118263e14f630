"""Webhook deliveries seen, so a repeated delivery is acted on once; pruned by age."""

from __future__ import annotations

from publish_service.adapters.pg import Executor


class WebhookReceipts:
    def __init__(self, schema: str) -> None:
        self._s = schema

    async def first_delivery(self, db: Executor, dedupe_key: str) -> bool:
        inserted = await db.fetchval(
            f"""INSERT INTO {self._s}.webhook_events (dedupe_key) VALUES ($1)
                ON CONFLICT DO NOTHING RETURNING true""",
            dedupe_key,
        )
        return bool(inserted)

    async def prune(self, db: Executor, keep_s: float, batch: int = 5000) -> int:
        """Forget receipts older than ``keep_s`` seconds, at most ``batch`` per call; how many went."""
        deleted = await db.fetchval(
            f"""WITH old AS (
                    SELECT dedupe_key FROM {self._s}.webhook_events
                    WHERE received_at < now() - make_interval(secs => $1)
                    ORDER BY received_at LIMIT $2
                )
                , gone AS (
                    DELETE FROM {self._s}.webhook_events w USING old
                    WHERE w.dedupe_key = old.dedupe_key RETURNING 1
                )
                SELECT count(*) FROM gone""",
            keep_s,
            batch,
        )
        return int(deleted or 0)
