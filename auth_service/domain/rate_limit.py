"""Per-address rate limit for ``/v1/connect`` (#12.11): a token bucket per client address.

``/v1/connect`` needs no auth and writes a row; without a limit one client can fill ``oauth_states``.
Pure: the caller passes the time. The number of addresses remembered is bounded (the oldest is
forgotten first), so a flood from many addresses cannot grow memory either.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class AddressLimiter:
    def __init__(self, *, per_minute: float, burst: int, max_addresses: int = 10_000) -> None:
        if per_minute <= 0 or burst < 1 or max_addresses < 1:
            raise ValueError("per_minute, burst and max_addresses must be positive")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._max = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, address: str, now: float) -> float:
        """0 when this request may go on (one token spent), else the seconds until one is allowed."""
        bucket = self._buckets.pop(address, None) or _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + max(0.0, now - bucket.at) * self._rate)
        bucket.at = now
        self._buckets[address] = bucket  # most recently seen last
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate
