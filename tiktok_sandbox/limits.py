"""Per-(token, endpoint) rate limiting and the call counters tests read through introspection."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]


@dataclass
class _Counters:
    calls: int = 0
    rate_limited: int = 0
    accepted: list[float] = field(default_factory=list)  # timestamps of calls that used a slot


class CallLog:
    def __init__(self, window_s: float, kind: str) -> None:
        self._window = window_s
        self._kind = kind
        self._by_key: defaultdict[Key, _Counters] = defaultdict(_Counters)

    def record_call(self, token: str, endpoint: str) -> None:
        self._by_key[(token, endpoint)].calls += 1

    def try_acquire(self, token: str, endpoint: str, limit: int | None, now: float) -> bool:
        """Take one slot of the window; False (and a counted rejection) when the window is full."""
        c = self._by_key[(token, endpoint)]
        if limit is not None and self._used(c.accepted, now) >= limit:
            c.rate_limited += 1
            return False
        c.accepted.append(now)
        return True

    def _used(self, stamps: list[float], now: float) -> int:
        if self._kind == "fixed":
            start = math.floor(now / self._window) * self._window
            return sum(1 for t in stamps if t >= start)
        return sum(1 for t in stamps if t > now - self._window)

    def _max_in_window(self, stamps: list[float]) -> int:
        best, lo = 0, 0
        for hi, t in enumerate(stamps):
            while stamps[lo] <= t - self._window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def snapshot(self) -> dict[str, Any]:
        rows = [
            {
                "token": token,
                "endpoint": endpoint,
                "calls": c.calls,
                "accepted": len(c.accepted),
                "rate_limited": c.rate_limited,
                "max_in_window": self._max_in_window(c.accepted),
            }
            for (token, endpoint), c in sorted(self._by_key.items())
        ]
        return {
            "window_s": self._window,
            "calls": rows,
            "rate_limited_total": sum(c.rate_limited for c in self._by_key.values()),
        }

    def clear(self) -> None:
        self._by_key.clear()
