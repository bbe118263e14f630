"""The stop protocol and readiness of common.tasks.BackgroundLoops (pure asyncio, no servers)."""

from __future__ import annotations

import asyncio

import pytest

from common.tasks import BackgroundLoops, NotReady, sleep_or_stop
from tests.waiting import wait_for


async def _well_behaved(stopping: asyncio.Event) -> None:
    await stopping.wait()


async def test_parts_get_the_shared_event_and_stop_when_it_is_set() -> None:
    seen: list[asyncio.Event] = []

    async def part(stopping: asyncio.Event) -> None:
        seen.append(stopping)
        await stopping.wait()

    loops = BackgroundLoops(shutdown_deadline=5)
    loops.add("a", part)
    loops.add("b", part)
    async with loops:
        await wait_for(lambda: len(seen) == 2, timeout=5)
        await loops.check()
    assert seen == [loops.stopping, loops.stopping]
    assert all(
        loop.task is not None and loop.task.done() and not loop.task.cancelled()
        for loop in loops._loops.values()
    )


async def test_a_part_that_crash_loops_makes_check_fail_naming_it() -> None:
    async def broken(_stopping: asyncio.Event) -> None:
        raise ValueError("bad config")

    loops = BackgroundLoops(shutdown_deadline=5, crash_limit=3)
    loops.add("fine", _well_behaved)
    loops.add("broken", broken, restart_delay=0.01)
    async with loops:
        await wait_for(lambda: loops._loops["broken"].crashes >= 3, timeout=5)
        with pytest.raises(
            NotReady, match=r"^broken: crashed \d+ times in a row, last: ValueError: bad config$"
        ):
            await loops.check()


async def test_one_crash_is_not_yet_a_crash_loop() -> None:
    crashed = asyncio.Event()

    async def once(stopping: asyncio.Event) -> None:
        if not crashed.is_set():
            crashed.set()
            raise ValueError("once")
        await stopping.wait()

    loops = BackgroundLoops(shutdown_deadline=5)
    loops.add("once", once, restart_delay=0.01)
    async with loops:
        await wait_for(lambda: loops._loops["once"].crashes == 1, timeout=5)
        await loops.check()


async def test_a_part_health_probe_is_named_by_check() -> None:
    problem: list[str] = []
    loops = BackgroundLoops(shutdown_deadline=5)
    loops.add("relay", _well_behaved, health=lambda: problem[0] if problem else None)
    async with loops:
        await loops.check()
        problem.append("5 failures in a row, last: KafkaUnavailable: away")
        with pytest.raises(NotReady, match=r"^relay: 5 failures in a row"):
            await loops.check()
        assert loops.problems() == {"relay": "5 failures in a row, last: KafkaUnavailable: away"}


async def test_a_part_that_ignores_stopping_is_cancelled_at_the_deadline() -> None:
    cancelled = asyncio.Event()

    async def stubborn(_stopping: asyncio.Event) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loops = BackgroundLoops(shutdown_deadline=0.2)
    loops.add("stubborn", stubborn)
    async with asyncio.timeout(5):
        async with loops:
            await asyncio.sleep(0)
    assert cancelled.is_set()


async def test_sleep_or_stop_ends_early_when_stopping() -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_soon(stopping.set)
    async with asyncio.timeout(5):
        assert await sleep_or_stop(stopping, 3600) is True
    assert await sleep_or_stop(asyncio.Event(), 0.01) is False


async def test_a_crash_loop_that_recovers_is_healthy_again() -> None:
    fixed = asyncio.Event()

    async def flaky(stopping: asyncio.Event) -> None:
        if not fixed.is_set():
            raise ValueError("table missing")
        await stopping.wait()  # recovered: runs on, never returns until stopping

    loops = BackgroundLoops(shutdown_deadline=5, crash_limit=3, recovered_after=0.3)
    loops.add("flaky", flaky, restart_delay=0.01)
    async with loops:
        await wait_for(lambda: loops._loops["flaky"].crashes >= 3, timeout=5)
        with pytest.raises(NotReady, match="flaky: crashed"):
            await loops.check()
        fixed.set()

        async def healthy() -> bool:
            try:
                await loops.check()
            except NotReady:
                return False
            return True

        assert await wait_for(healthy, timeout=5)
