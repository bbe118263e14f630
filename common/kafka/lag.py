"""Consumer lag on a timer: committed vs end offsets for the partitions this replica owns.

``LagReports.start(...)`` runs beside a consume loop. Every ``interval`` seconds it asks the source
for ``lag()`` (end offset minus committed offset per assigned partition) and calls
``on_lag(topic, partition, lag)``; a partition reported before and no longer assigned (revoked in
a rebalance) gets ``on_lag(topic, partition, None)`` once, and so does every partition when the
reports stop. A Kafka failure is logged and the next tick tries again: lag never stops consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import structlog
from aiokafka import TopicPartition

from common.errors import PipelineError
from common.tasks import sleep_or_stop

__all__ = ["LagReports", "LagSource", "dropped_partitions"]

log = structlog.get_logger(__name__)

LagObserver = Callable[[str, int, int | None], None]


@runtime_checkable
class LagSource(Protocol):
    """A source that can say how many records each assigned partition has past the committed offset."""

    async def lag(self) -> dict[TopicPartition, int]: ...


def dropped_partitions(reported: set[TopicPartition], assigned: set[TopicPartition]) -> set[TopicPartition]:
    """Partitions reported before that are not assigned now (their gauge must go)."""
    return reported - assigned


class LagReports:
    def __init__(self, name: str, source: LagSource, on_lag: LagObserver, interval: float) -> None:
        self._name = name
        self._source = source
        self._on_lag = on_lag
        self._interval = interval
        self._reported: set[TopicPartition] = set()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start(
        cls, name: str, source: LagSource, on_lag: LagObserver, interval: float, stopping: asyncio.Event
    ) -> LagReports:
        reports = cls(name, source, on_lag, interval)
        reports._task = asyncio.create_task(reports._run(stopping), name=f"{name}-lag")
        return reports

    async def tick(self) -> None:
        """Report once: the lag of every assigned partition, ``None`` for the ones gone since."""
        try:
            lags = await self._source.lag()
        except (PipelineError, RuntimeError) as exc:
            log.warning("consumer_lag_unknown", loop=self._name, error=f"{type(exc).__name__}: {exc}")
            return
        for tp in dropped_partitions(self._reported, set(lags)):
            self._on_lag(tp.topic, tp.partition, None)
        for tp, lag in lags.items():
            self._on_lag(tp.topic, tp.partition, lag)
        self._reported = set(lags)

    async def _run(self, stopping: asyncio.Event) -> None:
        while True:
            await self.tick()
            if await sleep_or_stop(stopping, self._interval):
                return

    async def stop(self) -> None:
        """Stop the timer and drop every partition reported (this replica reports them no more)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for tp in self._reported:
            self._on_lag(tp.topic, tp.partition, None)
        self._reported = set()
