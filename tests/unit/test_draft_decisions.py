"""Following a delivered inbox draft, table by table: published, failed, expired or poll again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from publish_service.domain.drafts import (
    DraftExpired,
    DraftFailed,
    DraftPollAgain,
    DraftPublished,
    draft_poll_delay,
    on_draft_status,
)

H = 3600.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIFETIME = 7 * 24 * H


@dataclass(frozen=True)
class Status:
    status: str
    fail_reason: str | None = None
    post_ids: Sequence[str] = field(default_factory=tuple)
    uploaded_bytes: int | None = None
    log_id: str | None = None


@pytest.mark.parametrize(
    ("polls", "expected"),
    [(0, 1 * H), (1, 2 * H), (2, 4 * H), (3, 6 * H), (4, 6 * H), (1000, 6 * H)],
)
def test_poll_interval_grows_from_one_hour_to_six(polls: int, expected: float) -> None:
    assert draft_poll_delay(polls, base_s=H, max_s=6 * H) == expected


@pytest.mark.parametrize(("base", "cap"), [(0.0, H), (-1.0, H), (2 * H, H)])
def test_poll_interval_refuses_a_bad_setting(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="draft poll interval"):
        draft_poll_delay(0, base_s=base, max_s=cap)


TABLE: list[tuple[Status | None, float, int, object]] = [
    # the creator posted it: published with the public ids, even after the lifetime
    (Status("PUBLISH_COMPLETE", post_ids=("7311",)), 2 * H, 0, DraftPublished(("7311",))),
    (Status("PUBLISH_COMPLETE"), 2 * H, 0, DraftPublished(())),
    (Status("PUBLISH_COMPLETE", post_ids=("1", "2")), LIFETIME + H, 9, DraftPublished(("1", "2"))),
    # TikTok failed it
    (Status("FAILED", fail_reason="internal"), 2 * H, 1, DraftFailed("internal")),
    (Status("FAILED"), 2 * H, 1, DraftFailed("unknown")),
    # still in the inbox: poll again with the growing interval
    (Status("SEND_TO_USER_INBOX"), 0.0, 0, DraftPollAgain(H)),
    (Status("SEND_TO_USER_INBOX"), 5 * H, 2, DraftPollAgain(4 * H)),
    (None, 5 * H, 7, DraftPollAgain(6 * H)),
    # the last poll lands at the end of the lifetime
    (Status("SEND_TO_USER_INBOX"), LIFETIME - 600, 7, DraftPollAgain(600.0)),
    # the lifetime is over
    (Status("SEND_TO_USER_INBOX"), LIFETIME, 7, DraftExpired()),
    (None, LIFETIME + 1, 7, DraftExpired()),
]


@pytest.mark.parametrize(("status", "age_s", "polls", "expected"), TABLE)
def test_on_draft_status(status: Status | None, age_s: float, polls: int, expected: object) -> None:
    decision = on_draft_status(
        status,
        delivered_at=T0,
        now=T0 + timedelta(seconds=age_s),
        lifetime_s=LIFETIME,
        polls=polls,
        base_s=H,
        max_s=6 * H,
    )
    assert decision == expected
