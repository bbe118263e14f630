"""TikTok's per-token, per-endpoint limits (spec §7.1) as a sliding-window log. Pure.

The adapter keeps the log in Postgres (one row per call) under an advisory transaction lock per
(account, endpoint), so the limit holds across every replica; this module decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Endpoint(StrEnum):
    creator_info = "creator_info"
    init = "init"  # video/init, inbox/video/init and content/init each allow 6/min; we count them together
    status = "status"
    video_query = "video_query"  # Display API (insights): 600/min per endpoint
    user_info = "user_info"


LIMITS: dict[Endpoint, int] = {
    Endpoint.creator_info: 20,
    Endpoint.init: 6,
    Endpoint.status: 30,
    Endpoint.video_query: 600,
    Endpoint.user_info: 600,
}

WINDOW_S = 60.0
SAFETY_S = 1.0
"""Our window is a second longer than TikTok's: our clock stamps a call before TikTok sees it."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait_s: float  # 0 when allowed; else how long until the oldest call leaves the window


def decide(calls: Sequence[float], now: float, limit: int, window_s: float = WINDOW_S + SAFETY_S) -> Decision:
    """May one more call go now, given the timestamps of earlier calls (any order)?"""
    recent = sorted(t for t in calls if t > now - window_s)
    if len(recent) < limit:
        return Decision(True, 0.0)
    # The call that frees a slot is the one `limit` places from the end.
    oldest_blocking = recent[len(recent) - limit]
    # At least a millisecond: float rounding must never turn a refusal into "wait 0 s".
    return Decision(False, max(0.001, oldest_blocking + window_s - now))
