"""The sandbox's notion of "now": real time plus an offset, freezable, so tests can jump ahead.

Every expiry, rate window, cap window and processing delay reads this clock, never `time.time()`.
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen_at: float | None = None
        self._changed = asyncio.Event()

    def now(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at
        return time.time() + self._offset

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    @property
    def offset(self) -> float:
        return self.now() - time.time()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        if self._frozen_at is not None:
            self._frozen_at += seconds
        else:
            self._offset += seconds
        self._notify()

    def reset(self) -> None:
        """Real time again: no offset, not frozen."""
        self._offset = 0.0
        self._frozen_at = None
        self._notify()

    def freeze(self) -> None:
        self._frozen_at = self.now()
        self._notify()

    def unfreeze(self) -> None:
        if self._frozen_at is not None:
            self._offset = self._frozen_at - time.time()
            self._frozen_at = None
        self._notify()

    async def wait_changed(self, max_wait_s: float) -> None:
        """Sleep up to `max_wait_s` real seconds, waking early when time is advanced or frozen."""
        try:
            async with asyncio.timeout(max_wait_s):
                await self._changed.wait()
        except TimeoutError:
            return
        finally:
            self._changed.clear()

    def _notify(self) -> None:
        self._changed.set()
