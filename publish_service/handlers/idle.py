"""Idle workers of one process take turns: a watcher wakes them one at a time.

When every idle worker waited on the due signal and on the earliest deferred post itself, they all
woke at once and all looked for work (a claim and a ``next_due_in`` each) for the one post one of
them would get: with 50 workers that herd was 7 % of the service's CPU while 50 uploads ran (py-spy
under ``bench/publish_upload.py``: claims and ``next_due_in`` on every deferred post's due time), and
100 queries a second at rest. Instead one watcher (:meth:`IdleWorkers.watch`, a loop of its own)
waits for the due signal, the earliest deferred post or the poll interval, and wakes one idle worker.
A worker that finds a post wakes the next one (there may be more: a batch of new requests is one
notification), and one that finds none goes back to waiting: a wake costs at most one empty look.

A wake with nobody waiting is kept for the next worker that would wait, so a worker between its empty
look and its wait cannot miss the notification that came in between. A worker that begins to wait
makes the watcher look again at the earliest deferred post (without waking anyone): it may have just
deferred one, due sooner than what the watcher was waiting for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from common.tasks import wait_or_stop
from publish_service.handlers.ports import WorkSignal

NextDue = Callable[[], Awaitable[float | None]]
"""Seconds until the earliest unleased post is due (<= 0: now; None: none waits)."""

MIN_IDLE_S = 0.02
"""The shortest wait: a due post another worker is claiming right now must not make the watcher spin."""


def idle_wait_s(next_due_s: float | None, poll_s: float) -> float:
    """How long the watcher waits with nothing notified: until the earliest deferred post is due, at
    most the poll interval, at least :data:`MIN_IDLE_S`."""
    if next_due_s is None:
        return poll_s
    return min(poll_s, max(next_due_s, MIN_IDLE_S))


class IdleWorkers:
    """The idle workers of one process, in the order they began to wait."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Event] = deque()
        self._kept = False  # a wake that found nobody waiting
        self._recheck = asyncio.Event()  # a worker began to wait: the watcher looks ahead again

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def wake_one(self) -> None:
        """Wake the longest waiting worker, or keep the wake for the next that would wait."""
        if self._waiting:
            self._waiting.popleft().set()
        else:
            self._kept = True

    def recheck(self) -> None:
        """Make the watcher look again at when the earliest deferred post is due."""
        self._recheck.set()

    async def wait(self, stopping: asyncio.Event) -> bool:
        """Wait for a wake (or take a kept one); True when ``stopping`` ended the wait."""
        self.recheck()
        if self._kept:
            self._kept = False
            return stopping.is_set()
        woken = asyncio.Event()
        self._waiting.append(woken)
        try:
            await wait_or_stop(woken, stopping)
        finally:
            if not woken.is_set():  # stopped (or cancelled): no wake may go to a worker that left
                self._waiting.remove(woken)
        return stopping.is_set()

    async def watch(
        self, next_due_in: NextDue, due: WorkSignal, poll_s: float, stopping: asyncio.Event
    ) -> None:
        """Wake one worker at each notification, at the earliest deferred post's due time and at
        least every ``poll_s`` seconds, until ``stopping`` is set."""
        while not stopping.is_set():
            seen = due.generation
            self._recheck.clear()
            wait_s = idle_wait_s(await next_due_in(), poll_s)
            due_or_timer = asyncio.ensure_future(due.wait(seen, wait_s))
            rechecked = asyncio.ensure_future(wait_or_stop(self._recheck, stopping))
            try:
                await asyncio.wait([due_or_timer, rechecked], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (due_or_timer, rechecked):
                    waiter.cancel()
                await asyncio.gather(due_or_timer, rechecked, return_exceptions=True)
            if stopping.is_set():
                return
            if due_or_timer.cancelled():  # only a recheck: look ahead again, wake nobody
                continue
            self.wake_one()
