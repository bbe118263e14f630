"""Retry and polling schedules. Pure functions of the attempt number (and a jitter source)."""

from __future__ import annotations

from common.backoff import Backoff as Backoff  # the one schedule; re-exported for the worker

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
