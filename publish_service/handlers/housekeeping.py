"""Periodic clean-up: webhook receipts older than the keep window are pruned (issue 12, point 10).

A receipt only has to outlive TikTok's re-deliveries (72 hours, spec §8.1); a signed delivery older
than the signature tolerance is refused anyway, so forgetting older receipts cannot let a replay in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from common.tasks import sleep_or_stop

log = structlog.get_logger(__name__)


async def prune_webhook_receipts(
    prune: Callable[[float], Awaitable[int]], *, keep_s: float, every_s: float, stopping: asyncio.Event
) -> None:
    while not await sleep_or_stop(stopping, every_s):
        try:
            pruned = await prune(keep_s)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("housekeeping_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        if pruned:
            log.info("webhook_receipts_pruned", count=pruned)
