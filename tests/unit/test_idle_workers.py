"""Idle workers take turns: one wake, one look for work (see ``publish_service/handlers/idle.py``).

The workers here are the real ``Worker`` loop against a store that only counts its claims (and hands
out the posts it is given), so what is counted is what PostgreSQL would be asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from publish_service.handlers.idle import MIN_IDLE_S, IdleWorkers, idle_wait_s
from publish_service.handlers.worker import Worker
from publish_service.metrics import Metrics
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("next_due_s", "poll_s", "expected"),
    [
        (None, 1.0, 1.0),  # nothing deferred: the poll
        (0.3, 1.0, 0.3),  # a deferred post due before the poll
        (5.0, 1.0, 1.0),  # due after the poll
        (0.0, 1.0, MIN_IDLE_S),  # due now (another worker is claiming it): no spinning
        (-2.0, 1.0, MIN_IDLE_S),  # overdue
    ],
)
def test_the_watchers_wait(next_due_s: float | None, poll_s: float, expected: float) -> None:
    assert idle_wait_s(next_due_s, poll_s) == expected


async def test_a_wake_with_nobody_waiting_is_kept_for_one_worker() -> None:
    idle, stopping = IdleWorkers(), asyncio.Event()
    idle.wake_one()
    assert await asyncio.wait_for(idle.wait(stopping), 1) is False  # taken at once
    second = asyncio.create_task(idle.wait(stopping))
    await wait_for(lambda: idle.waiting == 1, description="second waits")
    assert not second.done()
    stopping.set()
    assert await second is True


async def test_each_wake_wakes_the_longest_waiting_worker_only() -> None:
    idle, stopping = IdleWorkers(), asyncio.Event()
    waits = []
    for _ in range(3):
        waits.append(asyncio.create_task(idle.wait(stopping)))
        queued = len(waits)
        await wait_for(lambda: idle.waiting == queued, description="queued")  # noqa: B023
    idle.wake_one()
    assert await asyncio.wait_for(waits[0], 1) is False
    assert idle.waiting == 2 and not waits[1].done() and not waits[2].done()
    stopping.set()
    assert await asyncio.gather(waits[1], waits[2]) == [True, True]


@dataclass
class Signal:
    """The due signal: a generation that a notification moves."""

    generation: int = 0
    _moved: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.generation += 1
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait(self, seen: int, seconds: float) -> None:
        if self.generation == seen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), seconds)


@dataclass
class Store:
    """Claims: counted; each hands out the next of ``posts``, then nothing."""

    posts: list[str] = field(default_factory=list)
    claims: int = 0
    next_due: float | None = None
    looked_ahead: int = 0

    async def claim(self, owner: str, lease_s: float) -> Any:
        self.claims += 1
        return (
            SimpleNamespace(
                post_id=self.posts.pop(0), account_id="a", correlation_id=None, trace_context=None
            )
            if self.posts
            else None
        )

    async def next_due_in(self) -> float | None:
        self.looked_ahead += 1
        return self.next_due


@contextlib.asynccontextmanager
async def workers(
    store: Store, signal: Signal, count: int, poll_s: float = 3600.0
) -> AsyncIterator[tuple[IdleWorkers, list[str]]]:
    """``count`` workers and the watcher, all idle (each has looked once and found nothing)."""
    idle, stopping, worked = IdleWorkers(), asyncio.Event(), []

    class Counting(Worker):
        async def work(self, row: Any) -> None:
            worked.append(row.post_id)

    settings = SimpleNamespace(lease_s=30.0)
    metrics = Metrics()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(idle.watch(store.next_due_in, signal, poll_s, stopping))
        for n in range(count):
            worker = Counting(store, None, None, None, settings, metrics, f"w{n}", idle)  # type: ignore[arg-type]
            tg.create_task(worker.run(stopping))
        await wait_for(lambda: idle.waiting == count and store.looked_ahead >= 1, description="all idle")
        try:
            yield idle, worked
        finally:
            stopping.set()


async def test_a_notification_makes_one_of_twenty_idle_workers_look() -> None:
    store, signal = Store(), Signal()
    async with workers(store, signal, 20) as (idle, _):
        before = store.claims
        assert before == 20  # each looked once on starting
        signal.notify()
        await wait_for(lambda: store.claims > before, description="a worker looked")
        # Every worker woken has claimed by the time all twenty wait again.
        await wait_for(lambda: idle.waiting == 20, description="back to waiting")
        assert store.claims == before + 1


async def test_a_burst_of_due_posts_is_taken_by_a_chain_of_workers() -> None:
    store, signal = Store(), Signal()
    async with workers(store, signal, 20) as (idle, worked):
        before = store.claims
        store.posts = ["p1", "p2", "p3"]
        signal.notify()  # one notification for a batch of three requests
        await wait_for(lambda: len(worked) == 3 and idle.waiting == 20, description="three taken")
        # Each worker that found a post woke the next, and the fourth found none: the chain ended. The
        # three looked once more after their post, as a worker does when it is done with one.
        assert store.claims == before + 4 + 3
        assert sorted(worked) == ["p1", "p2", "p3"]


async def test_a_post_deferred_while_all_wait_wakes_one_worker_at_its_due_time() -> None:
    store, signal = Store(), Signal()
    async with workers(store, signal, 10) as (idle, worked):
        before, looked = store.claims, store.looked_ahead
        # A worker gave a post back for 0.2 s and went idle: no notification (it is not due yet).
        store.posts, store.next_due = ["deferred"], 0.2
        idle.recheck()  # what that worker's wait does
        await wait_for(lambda: store.looked_ahead > looked, description="the watcher looked ahead")
        assert store.claims == before  # looking ahead wakes nobody
        store.next_due = None
        await wait_for(lambda: worked == ["deferred"], timeout=5, description="taken at its due time")
        await wait_for(lambda: idle.waiting == 10, description="back to waiting")
        # The due time woke one worker; it found the post, woke one more (which found none) and looked
        # once more after its post.
        assert store.claims == before + 3
