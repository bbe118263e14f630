"""Insights decisions, table by table: the schedule, the batches, and what each answer becomes."""

from __future__ import annotations

import pytest

from common.events import InsightsUnavailable
from publish_service.domain.insights import (
    DEFAULT_SCHEDULE_S,
    MAX_ATTEMPTS,
    MAX_BATCH,
    SlotOutcome,
    Verdict,
    after_answer,
    after_error,
    batches,
    parse_schedule,
    retry_delay,
    scopes_missing,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h,6h,24h,3d,7d,30d", DEFAULT_SCHEDULE_S),
        ("90s", (90.0,)),
        (" 2s , 15m ,1.5h", (2.0, 900.0, 5400.0)),
    ],
)
def test_schedule_parses(text: str, expected: tuple[float, ...]) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a delay"),
        ("1h,", "is not a delay"),
        ("1w", "is not a delay"),
        ("-1h", "is not a delay"),
        ("0s", "longer than 0"),
        ("6h,1h", "strictly increasing"),
        ("1h,1h", "strictly increasing"),
    ],
)
def test_schedule_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_schedule(text)


def test_default_schedule_is_the_documented_one() -> None:
    assert DEFAULT_SCHEDULE_S == (3600, 21600, 86400, 259200, 604800, 2592000)


@pytest.mark.parametrize(
    ("n", "sizes"),
    [(0, []), (1, [1]), (20, [20]), (21, [20, 1]), (300, [20] * 15), (301, [20] * 15 + [1])],
)
def test_batches_are_as_few_as_tiktok_allows(n: int, sizes: list[int]) -> None:
    ids = [str(7300000000000000000 + i) for i in range(n)]
    out = batches(ids)
    assert [len(b) for b in out] == sizes
    assert [i for b in out for i in b] == ids
    assert MAX_BATCH == 20


def test_batches_ask_for_a_repeated_id_once() -> None:
    assert batches(["1", "2", "1", "3", "2"]) == [["1", "2", "3"]]


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (True, SlotOutcome(Verdict.counts)),
        (
            False,
            SlotOutcome(Verdict.unavailable, InsightsUnavailable.video_unavailable, later_slots_done=True),
        ),
    ],
)
def test_after_answer(returned: bool, expected: SlotOutcome) -> None:
    assert after_answer(returned) == expected


SCOPE_SAID = SlotOutcome(Verdict.unavailable, InsightsUnavailable.scope_missing, later_slots_done=True)
SCOPE_QUIET = SlotOutcome(Verdict.drop, later_slots_done=True)
FAILED = SlotOutcome(Verdict.unavailable, InsightsUnavailable.query_failed)


@pytest.mark.parametrize(
    ("code", "status", "reported", "attempts", "expected"),
    [
        ("scope_not_authorized", 401, False, 1, SCOPE_SAID),
        ("scope_not_authorized", 401, True, 1, SCOPE_QUIET),
        ("scope_permission_missed", 400, False, 1, SCOPE_SAID),
        ("access_token_invalid", 401, False, 1, SlotOutcome(Verdict.refresh)),
        ("access_token_invalid", 401, False, 99, SlotOutcome(Verdict.refresh)),
        ("rate_limit_exceeded", 429, False, 1, SlotOutcome(Verdict.retry)),
        ("rate_limit_exceeded", 429, False, 99, SlotOutcome(Verdict.retry)),
        ("internal_error", 500, False, 99, SlotOutcome(Verdict.retry)),
        ("invalid_params", 400, False, 1, SlotOutcome(Verdict.retry)),
        ("invalid_params", 400, False, MAX_ATTEMPTS - 1, SlotOutcome(Verdict.retry)),
        ("invalid_params", 400, False, MAX_ATTEMPTS, FAILED),
        ("something_new", 403, False, MAX_ATTEMPTS, FAILED),
    ],
)
def test_after_error(code: str, status: int, reported: bool, attempts: int, expected: SlotOutcome) -> None:
    assert after_error(code, status, scope_reported=reported, attempts=attempts) == expected


@pytest.mark.parametrize(
    ("granted", "missing"),
    [
        ([], False),  # unknown: ask TikTok
        (["user.info.basic", "video.publish"], True),
        (["user.info.basic", "user.info.stats"], False),
    ],
)
def test_scopes_missing(granted: list[str], missing: bool) -> None:
    assert scopes_missing(granted, "user.info.stats") is missing


@pytest.mark.parametrize(("attempts", "delay"), [(1, 30.0), (2, 60.0), (3, 120.0), (8, 3600.0), (50, 3600.0)])
def test_retry_delay_doubles_up_to_an_hour(attempts: int, delay: float) -> None:
    assert retry_delay(attempts) == delay
