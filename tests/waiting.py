"""Wait for something to become true, with a deadline: the only way tests wait.

    row = await wait_for(lambda: repo.get(post_id), timeout=10)          # a truthy result
    await wait_for(consumer_has_seen, description="status event for post 1")
    state = await wait_for_value(lambda: fetch_state(post_id), "published")

A predicate may be a plain function or a coroutine function; it is called until it returns a
truthy value (or, for ``wait_for_value``, the expected value), and that value is returned.
On timeout an ``WaitTimeout`` (an ``AssertionError``) names what was awaited and the last result.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

_MISSING = object()


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline."""


async def _call(fn: Callable[[], Any]) -> Any:
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,
    interval: float = ...,
    *,
    description: str | None = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T],
    timeout: float = ...,
    interval: float = ...,
    *,
    description: str | None = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    description: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that.

    ``ignore``: exception types that mean "not yet" (e.g. a connection refused while a server starts);
    any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: Any = _MISSING
    last_exc: BaseException | None = None
    while True:
        try:
            last = await _call(predicate)
            last_exc = None
        except ignore as exc:
            last_exc = exc
        else:
            if last:
                return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = description or getattr(predicate, "__qualname__", repr(predicate))
            detail = f"last error {last_exc!r}" if last_exc is not None else f"last result {last!r}"
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what} ({detail})")
        await asyncio.sleep(min(interval, remaining))


@overload
async def wait_for_value(
    fn: Callable[[], Awaitable[T]],
    expected: Any,
    timeout: float = ...,
    interval: float = ...,
    *,
    description: str | None = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def wait_for_value(
    fn: Callable[[], T],
    expected: Any,
    timeout: float = ...,
    interval: float = ...,
    *,
    description: str | None = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def wait_for_value(
    fn: Callable[[], Any],
    expected: Any,
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    description: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``fn`` until it returns ``expected`` (``==``), or until ``expected(value)`` is true when
    ``expected`` is callable; return the value."""
    check: Callable[[Any], bool] = expected if callable(expected) else (lambda value: value == expected)
    seen: list[Any] = []

    async def probe() -> bool:
        value = await _call(fn)
        seen[:] = [value]
        return bool(check(value))

    what = description or getattr(fn, "__qualname__", repr(fn))
    try:
        await wait_for(probe, timeout, interval, description=what, ignore=ignore)
    except WaitTimeout:
        last = repr(seen[0]) if seen else "nothing (every call raised)"
        raise WaitTimeout(
            f"timed out after {timeout:g}s waiting for {what} to be {expected!r}; last value {last}"
        ) from None
    return seen[0]
