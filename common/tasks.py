"""The stop protocol, and the background loops that live and die with the app.

Every long-running part of a service is an ``async def run(stopping: asyncio.Event) -> None``: it
works until ``stopping`` is set, then finishes what it has in hand (a batch, a refresh, a chunk) and
returns. Nothing else stops it: no ``stop()`` method, no flag of its own, no task to cancel from the
side. Every wait inside it ends when ``stopping`` is set (``sleep_or_stop``, ``wait_or_stop``).

``BackgroundLoops`` runs those parts as an aiohttp ``cleanup_ctx`` entry (or ``async with``). One
event is shared by all of them. A part that raises is logged and restarted after a pause (a crashed
relay must not silently stop publishing). Shutdown sets the event, waits up to a deadline, then
cancels what is left.

Readiness (``check()``) tells the truth about each part: it is unhealthy when its task is gone, when
it crash-loops (``crash_limit`` crashes in a row, none of them after a run that lasted
``stable_after`` seconds), or when its own ``health()`` probe names a problem (the outbox relay does
after failing to deliver several times in a row). ``check()`` raises naming every unhealthy part.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

Run = Callable[[asyncio.Event], Awaitable[None]]
"""A long-running part: works until the event is set, then returns."""

Health = Callable[[], str | None]
"""A part's own health probe: ``None`` when fine, else what is wrong (shown by ``/readyz``)."""


class Runnable(Protocol):
    """What every long-running part looks like."""

    async def run(self, stopping: asyncio.Event) -> None: ...


class NotReady(RuntimeError):
    """Raised by ``BackgroundLoops.check``; the message names each unhealthy loop (for the log),
    ``parts`` names them only (what an unauthenticated ``/readyz`` may show)."""

    def __init__(self, message: str, parts: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.parts = parts


@dataclass
class _Loop:
    name: str
    run: Run
    restart_delay: float
    health: Health | None
    task: asyncio.Task[None] | None = None
    crashes: int = 0
    crashes_in_a_row: int = 0
    last_error: str | None = None
    running_since: float | None = None


@dataclass
class BackgroundLoops:
    shutdown_deadline: float = 20.0
    crash_limit: int = 3
    """This many crashes in a row make the loop unhealthy."""
    stable_after: float = 60.0
    """A run that lasted this long before it crashed starts the count again."""
    recovered_after: float = 10.0
    """A crash-looping part whose current run has lasted this long counts as healthy again for
    ``check()`` (a relay that recovered runs on without returning, so no new crash resets the count)."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _loops: dict[str, _Loop] = field(default_factory=dict)

    def add(self, name: str, run: Run, *, restart_delay: float = 1.0, health: Health | None = None) -> None:
        """Run ``run(stopping)`` from ``start()`` until ``stop()``; ``health`` feeds ``check()``."""
        if name in self._loops:
            raise ValueError(f"a loop named {name!r} exists already")
        self._loops[name] = _Loop(name, run, restart_delay, health)

    async def _supervise(self, loop: _Loop) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            loop.running_since = started
            try:
                await loop.run(self.stopping)
                if self.stopping.is_set():
                    return
                log.warning("loop_returned", loop=loop.name)
                loop.crashes_in_a_row = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                loop.running_since = None
                loop.crashes += 1
                if time.monotonic() - started >= self.stable_after:
                    loop.crashes_in_a_row = 0
                loop.crashes_in_a_row += 1
                loop.last_error = f"{type(exc).__name__}: {exc}"[:160]
                log.exception("loop_crashed", loop=loop.name, crashes=loop.crashes)
            await sleep_or_stop(self.stopping, loop.restart_delay)

    async def start(self) -> None:
        for loop in self._loops.values():
            loop.task = asyncio.create_task(self._supervise(loop), name=f"loop:{loop.name}")

    async def stop(self) -> None:
        self.stopping.set()
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_deadline)
        for task in pending:
            log.warning("loop_cancelled_at_deadline", loop=task.get_name())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> BackgroundLoops:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def problems(self) -> dict[str, str]:
        """Each unhealthy loop's name with what is wrong; empty when all are well (or stopping)."""
        if self.stopping.is_set():
            return {}
        found: dict[str, str] = {}
        for loop in self._loops.values():
            if loop.task is None or loop.task.done():
                found[loop.name] = "not running"
            elif loop.crashes_in_a_row >= self.crash_limit and not self._recovered(loop):
                found[loop.name] = f"crashed {loop.crashes_in_a_row} times in a row, last: {loop.last_error}"
            elif loop.health is not None and (problem := loop.health()) is not None:
                found[loop.name] = problem
        return found

    def _recovered(self, loop: _Loop) -> bool:
        since = loop.running_since
        return since is not None and time.monotonic() - since >= self.recovered_after

    async def check(self) -> None:
        """For ``/readyz``: raise ``NotReady`` naming every unhealthy loop."""
        found = self.problems()
        if found:
            raise NotReady("; ".join(f"{name}: {problem}" for name, problem in found.items()), tuple(found))


async def sleep_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless ``stopping`` is set first; True means stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


async def wait_or_stop(event: asyncio.Event, stopping: asyncio.Event, seconds: float | None = None) -> bool:
    """Wait until ``event`` or ``stopping`` is set (or ``seconds`` pass); True means ``event`` is set."""
    waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopping.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return event.is_set()


def started_after(event: asyncio.Event, run: Run) -> Run:
    """``run``, started once ``event`` is set (returns at once if ``stopping`` comes first)."""

    async def gated(stopping: asyncio.Event) -> None:
        if await wait_or_stop(event, stopping):
            await run(stopping)

    return gated
