"""Background loops that live and die with the app: started, watched, cancelled and awaited.

``BackgroundLoops`` is used as an aiohttp ``cleanup_ctx`` entry (or ``async with``). A loop that
crashes is logged and restarted after a pause (a crashed relay must not silently stop publishing);
``check()`` tells readiness whether every loop is alive. Shutdown asks loops to stop, waits up to a
deadline, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

LoopFactory = Callable[[], Awaitable[None]]


@dataclass
class _Loop:
    name: str
    factory: LoopFactory
    restart_delay: float
    task: asyncio.Task[None] | None = None
    crashes: int = 0


@dataclass
class BackgroundLoops:
    shutdown_deadline: float = 20.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _loops: dict[str, _Loop] = field(default_factory=dict)

    def add(self, name: str, factory: LoopFactory, *, restart_delay: float = 1.0) -> None:
        if name in self._loops:
            raise ValueError(f"a loop named {name!r} exists already")
        self._loops[name] = _Loop(name, factory, restart_delay)

    async def _supervise(self, loop: _Loop) -> None:
        while not self.stopping.is_set():
            try:
                await loop.factory()
                if self.stopping.is_set():
                    return
                log.warning("loop_returned", loop=loop.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                loop.crashes += 1
                log.exception("loop_crashed", loop=loop.name, crashes=loop.crashes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), loop.restart_delay)

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

    async def check(self) -> None:
        dead = [loop.name for loop in self._loops.values() if loop.task is None or loop.task.done()]
        if dead and not self.stopping.is_set():
            raise RuntimeError(f"background loops not running: {', '.join(dead)}")


async def sleep_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless ``stopping`` is set first; True means stop."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True
