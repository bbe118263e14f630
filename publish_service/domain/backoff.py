"""Retry and polling schedules. Pure functions of the attempt number (and a jitter source)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.2  # ± this fraction, so replicas that failed together don't retry together

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before try number ``attempt`` + 1 (``attempt`` ≥ 1 failures so far)."""
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        if self.jitter <= 0:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))


TRANSIENT = Backoff(initial=1.0, factor=2.0, maximum=120.0)
"""5xx, broken connections, Kafka/DB hiccups."""

RATE_LIMITED = Backoff(initial=10.0, factor=2.0, maximum=300.0)
"""429 ``rate_limit_exceeded``: TikTok documents no Retry-After; the next minute window is the unit."""

MAX_TRANSIENT_ATTEMPTS = 12
MAX_CAP_ATTEMPTS = 8


def status_poll_delay(polls: int) -> float:
    """Status fetch cadence (§10.6): every 2 s at first, slowing to every 30 s."""
    if polls < 10:
        return 2.0
    if polls < 30:
        return 5.0
    return 30.0


def post_id_poll_delay(polls: int) -> float:
    """After PUBLISH_COMPLETE, moderation can take minutes or hours: poll less and less often."""
    return min(600.0, 5.0 * 1.5 ** min(polls, 20))
