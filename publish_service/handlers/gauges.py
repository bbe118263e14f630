"""``tiktok_posts_in_state`` (how many posts are in each state) and
``tiktok_posts_oldest_in_state_seconds`` (how long the least recently changed one has been there),
every few seconds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from common.errors import is_retriable
from common.events import PostState
from common.tasks import sleep_or_stop
from publish_service.handlers.ports import PostCounts
from publish_service.metrics import Metrics

log = structlog.get_logger(__name__)


@dataclass
class PostStateGauge:
    repo: PostCounts
    metrics: Metrics
    every: float = 5.0

    async def run(self, stopping: asyncio.Event) -> None:
        while True:
            try:
                counts = await self.repo.count_by_state()
                for state in PostState:
                    self.metrics.posts_in_state.labels(state.value).set(counts.get(state.value, 0))
                for name, age in (await self.repo.oldest_by_state()).items():
                    self.metrics.oldest_in_state.labels(name).set(age)
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                log.warning("gauges_unknown", error=f"{type(exc).__name__}: {exc}")
            if await sleep_or_stop(stopping, self.every):
                return
