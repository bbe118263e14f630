"""Webhook deliveries seen, so a repeated delivery is acted on once."""

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
