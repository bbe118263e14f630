"""When to refresh a token (the retry schedule after a failed attempt is ``common.backoff.Backoff``).

Everything is computed from the ``expires_in`` of each token response (TikTok's lifetimes changed
from 24 h to 2 h in 2026; spec §2.5), never from a hard-coded lifetime.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RefreshPolicy:
    """Refresh at ``fraction`` of the lifetime, but at least ``min_lead_s`` before expiry.

    For very short lifetimes (where ``min_lead_s`` would leave no time at all) the refresh happens at
    ``floor_fraction`` of the lifetime instead, so a token is never refreshed the moment it arrives.
    ``jitter`` spreads refreshes of accounts connected together: the delay is shortened by up to
    that fraction (never lengthened, so the lead only grows).
    """

    fraction: float = 0.8
    min_lead_s: float = 300.0
    floor_fraction: float = 0.5
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.floor_fraction <= self.fraction < 1:
            raise ValueError("need 0 < floor_fraction <= fraction < 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.min_lead_s < 0:
            raise ValueError("min_lead_s must not be negative")

    def base_delay(self, expires_in: float) -> float:
        """Seconds after issuance to refresh, before jitter."""
        if expires_in <= 0:
            return 0.0
        delay = expires_in * self.fraction
        if expires_in - delay < self.min_lead_s:
            delay = max(expires_in - self.min_lead_s, expires_in * self.floor_fraction)
        return delay

    def delay(self, expires_in: float, rng: random.Random | None = None) -> float:
        base = self.base_delay(expires_in)
        if self.jitter == 0 or base == 0:
            return base
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)

    def refresh_at(
        self, issued_at: datetime, expires_in: float, rng: random.Random | None = None
    ) -> datetime:
        return issued_at + timedelta(seconds=self.delay(expires_in, rng))

