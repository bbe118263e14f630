"""Following an inbox draft after ``inbox_delivered``: pure decisions, the worker only executes.

A draft waits in the creator's TikTok inbox until the creator posts it from the app (spec §4.8) or it
lapses. TikTok reports the posting by the ``post.publish.complete`` webhook (§8) and by the status
fetch answering ``PUBLISH_COMPLETE``. The webhook comes first; the slow poll here is the fallback when
no webhook arrives: it starts at ``base_s`` (1 h by default), doubles up to ``max_s`` (6 h), never
sleeps past the draft's end, and stops at ``published``, ``failed`` or the end of the draft's lifetime
(``draft_expired``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from publish_service.domain.decisions import StatusAnswer

DRAFT_EXPIRED = "draft_expired"


@dataclass(frozen=True)
class DraftPublished:
    """The creator posted the draft."""

    post_ids: tuple[str, ...]


@dataclass(frozen=True)
class DraftFailed:
    """TikTok failed the draft (for example the creator deleted it, or moderation refused it)."""

    fail_reason: str


@dataclass(frozen=True)
class DraftExpired:
    """The draft's lifetime ended without the creator posting it."""


@dataclass(frozen=True)
class DraftPollAgain:
    delay_s: float


DraftDecision = DraftPublished | DraftFailed | DraftExpired | DraftPollAgain


def draft_poll_delay(polls: int, *, base_s: float, max_s: float) -> float:
    """The wait before poll number ``polls + 1``: ``base_s`` doubling per poll, capped at ``max_s``."""
    if base_s <= 0 or max_s < base_s:
        raise ValueError(f"draft poll interval: need 0 < base_s <= max_s, got {base_s} and {max_s}")
    return float(min(base_s * (2 ** min(polls, 32)), max_s))


def on_draft_status(
    status: StatusAnswer | None,
    *,
    delivered_at: datetime,
    now: datetime,
    lifetime_s: float,
    polls: int,
    base_s: float,
    max_s: float,
) -> DraftDecision:
    """What to do with a delivered draft given the latest status fetch (``None``: none was made).

    A posted or failed draft ends by TikTok's word even when the answer comes after the lifetime;
    otherwise the draft expires once its lifetime is over, else the next poll waits the growing
    interval, cut so the last poll lands at the end of the lifetime.
    """
    if status is not None:
        if status.status == "PUBLISH_COMPLETE":
            return DraftPublished(post_ids=tuple(str(i) for i in status.post_ids))
        if status.status == "FAILED":
            return DraftFailed(fail_reason=status.fail_reason or "unknown")
    ends = delivered_at + timedelta(seconds=lifetime_s)
    if now >= ends:
        return DraftExpired()
    delay = draft_poll_delay(polls, base_s=base_s, max_s=max_s)
    remaining = (ends - now).total_seconds()
    return DraftPollAgain(delay_s=min(delay, remaining))
