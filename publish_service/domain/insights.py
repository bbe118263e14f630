"""Insights decisions, pure: the metrics schedule, batching, and what to do with TikTok's answer.

The adapter stores one row per (post, slot); a fetcher claims the due rows of one account (at most
one query's worth), asks TikTok once, and this module says what each row becomes.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from common.events import InsightsUnavailable
from common.tiktok.errors import Action, classify

HOUR, DAY = 3600.0, 86400.0
DEFAULT_SCHEDULE_S: tuple[float, ...] = (HOUR, 6 * HOUR, 24 * HOUR, 3 * DAY, 7 * DAY, 30 * DAY)
"""1 h, 6 h, 24 h, 3 d, 7 d and 30 d after the post reached ``published`` with a public id."""

MAX_BATCH = 20
"""TikTok's /v2/video/query/ takes up to 20 video ids per request."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ITEM = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*$")


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"1h,6h,24h,3d,7d,30d"`` to seconds; strictly increasing, at least one slot, each > 0."""
    slots = []
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{item.strip()!r} is not a delay like 90s, 15m, 6h or 3d")
        slots.append(float(match.group(1)) * _UNITS[match.group(2)])
    if any(s <= 0 for s in slots):
        raise ValueError("every delay must be longer than 0")
    if any(b <= a for a, b in itertools.pairwise(slots)):
        raise ValueError("delays must be strictly increasing")
    return tuple(slots)


def batches(ids: Sequence[str], size: int = MAX_BATCH) -> list[list[str]]:
    """Distinct ids in order, in as few queries as the batch size allows."""
    distinct = list(dict.fromkeys(ids))
    return [distinct[i : i + size] for i in range(0, len(distinct), size)]


class Verdict(StrEnum):
    counts = "counts"  # an event with the counts
    unavailable = "unavailable"  # an event saying why there are no counts; the slot is done
    drop = "drop"  # done without an event (scope_missing was already said for this post)
    retry = "retry"  # the slot stays due; try again after a delay
    refresh = "refresh"  # the token was refused: ask for a new one, then retry


@dataclass(frozen=True)
class SlotOutcome:
    verdict: Verdict
    reason: InsightsUnavailable | None = None
    later_slots_done: bool = False  # the post's remaining slots are done too (nothing more to learn)


def after_answer(returned: bool) -> SlotOutcome:
    """TikTok answered the query: a video left out is deleted, not public, or not the user's."""
    if returned:
        return SlotOutcome(Verdict.counts)
    return SlotOutcome(Verdict.unavailable, InsightsUnavailable.video_unavailable, later_slots_done=True)


MAX_ATTEMPTS = 6
"""A slot whose query keeps failing with an error that is not TikTok being busy ends after this many."""


def after_error(
    code: str, http_status: int | None, *, scope_reported: bool, attempts: int = 1
) -> SlotOutcome:
    """TikTok refused the query. A missing scope is said once per post, then the post's slots end;
    busy answers (429, 5xx) are retried for as long as it takes; other refusals end the slot after
    :data:`MAX_ATTEMPTS` (``attempts`` counts this one)."""
    action = classify(code, http_status)
    if code in ("scope_not_authorized", "scope_permission_missed"):
        if scope_reported:
            return SlotOutcome(Verdict.drop, later_slots_done=True)
        return SlotOutcome(Verdict.unavailable, InsightsUnavailable.scope_missing, later_slots_done=True)
    if action is Action.refresh:
        return SlotOutcome(Verdict.refresh)
    if action is Action.retry or attempts < MAX_ATTEMPTS:
        return SlotOutcome(Verdict.retry)
    return SlotOutcome(Verdict.unavailable, InsightsUnavailable.query_failed)


def scopes_missing(granted: Sequence[str], needed: str) -> bool:
    """Known before asking: the account's grant lacks the scope (an empty list means unknown)."""
    return bool(granted) and needed not in granted


def retry_delay(attempts: int, base_s: float = 30.0, cap_s: float = 3600.0) -> float:
    """Backoff for a query that failed ``attempts`` times in a row (1-based)."""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))
