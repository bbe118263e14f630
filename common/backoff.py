"""The one retry schedule of the project: exponential, capped, with jitter that only shortens.

``delay(attempt)`` is a pure function of the attempt number and a random source: the ceiling is
``initial * factor ** (attempt - 1)`` capped at ``maximum``, and jitter draws the delay from
``[ceiling * (1 - jitter), ceiling]``. Jitter spreads replicas that failed together and never makes
a wait longer than the cap. ``jitter=0`` gives exact delays (tests, schedules), ``jitter=0.5`` is
"equal jitter" (half the ceiling, then a random half).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.2
    """The delay is shortened by a random fraction of at most this (0 <= jitter <= 1)."""

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial or self.factor < 1:
            raise ValueError("need 0 <= initial <= maximum and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")

    def ceiling(self, attempt: int) -> float:
        """The delay before try ``attempt + 1`` without jitter (``attempt`` >= 1 failures so far)."""
        exponent = max(0, min(attempt - 1, 64))
        return float(min(self.maximum, self.initial * self.factor**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` >= 1 failures so far)."""
        ceiling = self.ceiling(attempt)
        if self.jitter == 0 or ceiling == 0:
            return ceiling
        return ceiling * (1.0 - self.jitter * (rng or random).random())
