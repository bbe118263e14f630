"""publish_service's decisions, table by table: what the worker does with each answer from TikTok."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from common.tiktok.chunks import ChunkPlan
from common.tiktok.errors import TikTokError
from publish_service.domain import backoff
from publish_service.domain.decisions import (
    MAX_CHUNK_RETRIES,
    MAX_PUBLISH_ATTEMPTS,
    Advance,
    Defer,
    Delivered,
    Fail,
    PollAgain,
    Published,
    Refresh,
    Reinit,
    Resync,
    RetryChunk,
    StartOver,
    Uploaded,
    UploadGone,
    after_chunk_retry,
    after_upload_gone,
    on_put,
    on_status,
    on_tiktok_error,
)

CAP_RETRY_S = 900.0

# The spec's master error table (§6.2): every code, with the HTTP status(es) TikTok answers it with,
# plus the undocumented codes seen in clients and an unknown one. "ok" is success, not an error.
# Expected: "refresh", "fail", or the backoff the Defer follows ("transient", "rate", "cap").
ERROR_TABLE: list[tuple[str, int, str]] = [
    ("invalid_param", 400, "fail"),
    ("invalid_params", 400, "fail"),
    ("invalid_file_upload", 400, "fail"),
    ("scope_permission_missed", 400, "fail"),
    ("app_version_check_failed", 400, "fail"),
    ("invalid_publish_id", 400, "fail"),
    ("token_not_authorized_for_specified_publish_id", 400, "fail"),
    ("publish_not_cancellable", 400, "fail"),
    ("access_token_invalid", 401, "refresh"),
    ("access_token_invalid", 200, "refresh"),  # one client saw it with HTTP 200
    ("scope_not_authorized", 401, "fail"),
    ("spam_risk_too_many_posts", 403, "cap"),
    ("spam_risk_too_many_posts", 200, "cap"),  # creator_info answers its caps with HTTP 200
    ("spam_risk_user_banned_from_posting", 403, "fail"),
    ("spam_risk_user_banned_from_posting", 200, "fail"),
    ("spam_risk_too_many_pending_share", 403, "cap"),
    ("reached_active_user_cap", 403, "cap"),
    ("reached_active_user_cap", 200, "cap"),
    ("unaudited_client_can_only_post_to_private_accounts", 403, "fail"),
    ("url_ownership_unverified", 403, "fail"),
    ("privacy_level_option_mismatch", 403, "fail"),
    ("rate_limit_exceeded", 429, "rate"),
    ("internal_error", 500, "transient"),
    ("internal_error", 503, "transient"),
    # Not in the table, seen in clients:
    ("access_token_expired", 401, "refresh"),
    ("invalid_client", 401, "fail"),
    # Unknown: a failure, unless the HTTP status says TikTok itself is in trouble.
    ("something_new", 400, "fail"),
    ("something_new", 502, "transient"),
]

SPEC_CODES = {
    "invalid_param",
    "invalid_params",
    "invalid_file_upload",
    "scope_permission_missed",
    "app_version_check_failed",
    "invalid_publish_id",
    "token_not_authorized_for_specified_publish_id",
    "publish_not_cancellable",
    "access_token_invalid",
    "scope_not_authorized",
    "spam_risk_too_many_posts",
    "spam_risk_user_banned_from_posting",
    "spam_risk_too_many_pending_share",
    "reached_active_user_cap",
    "unaudited_client_can_only_post_to_private_accounts",
    "url_ownership_unverified",
    "privacy_level_option_mismatch",
    "rate_limit_exceeded",
    "internal_error",
}

POLICIES = {
    "transient": backoff.TRANSIENT.initial,
    "rate": backoff.RATE_LIMITED.initial,
    "cap": CAP_RETRY_S,
}


def _error(code: str, http: int) -> TikTokError:
    return TikTokError(code, f"TikTok says {code}", log_id="20240829190020EBE0D84CCEA6DE000CB6", status=http)


def test_the_error_table_covers_every_code_of_the_spec() -> None:
    assert {code for code, _, _ in ERROR_TABLE} >= SPEC_CODES


@pytest.mark.parametrize(("code", "http", "expected"), ERROR_TABLE)
def test_tiktok_error_on_a_fresh_post(code: str, http: int, expected: str) -> None:
    decision = on_tiktok_error(_error(code, http), 0, cap_retry_s=CAP_RETRY_S, rng=random.Random(1))
    if expected == "refresh":
        assert decision == Refresh(code)
    elif expected == "fail":
        assert isinstance(decision, Fail)
        assert decision.error.code == code
        assert decision.error.message == f"TikTok says {code}"
        assert decision.error.tiktok_log_id == "20240829190020EBE0D84CCEA6DE000CB6"
        assert decision.error.retryable is False
    else:
        assert isinstance(decision, Defer)
        assert (decision.reason, decision.failures) == (code, 1)
        base = POLICIES[expected]
        assert base * 0.8 <= decision.delay_s <= base * 1.2  # the first step of its backoff, ± jitter


@pytest.mark.parametrize(
    ("code", "http", "expected"), [r for r in ERROR_TABLE if r[2] not in ("fail", "refresh")]
)
def test_retries_end_in_a_failure_that_says_it_was_passing(code: str, http: int, expected: str) -> None:
    limit = backoff.MAX_CAP_ATTEMPTS if expected == "cap" else backoff.MAX_TRANSIENT_ATTEMPTS
    last_try = on_tiktok_error(_error(code, http), limit - 1, cap_retry_s=CAP_RETRY_S)
    assert isinstance(last_try, Defer) and last_try.failures == limit
    over = on_tiktok_error(_error(code, http), limit, cap_retry_s=CAP_RETRY_S)
    assert isinstance(over, Fail)
    assert (over.error.code, over.error.retryable) == (code, True)


def test_a_refresh_is_asked_for_whatever_the_failures_so_far() -> None:
    assert on_tiktok_error(_error("access_token_invalid", 401), 99, cap_retry_s=CAP_RETRY_S) == Refresh(
        "access_token_invalid"
    )


# ------------------------------------------------------------------------------------------ PUT answers

PLAN = ChunkPlan(50_000_123, 10_000_000, 5)  # the guide's worked example: 5 chunks, a large last one
SECOND = (10_000_000, 19_999_999)
LAST = (40_000_000, 50_000_122)

PUT_TABLE: list[tuple[int, str | None, tuple[int, int], object]] = [
    (206, "bytes 0-19999999/50000123", SECOND, Advance(20_000_000, 10_000_000)),
    (206, None, SECOND, Advance(20_000_000, 10_000_000)),  # our range is what was accepted
    (201, "bytes 0-50000122/50000123", LAST, Advance(50_000_123, 10_000_123)),
    (416, "bytes 0-29999999/50000123", SECOND, Resync(30_000_000)),  # X is the last index
    (416, "bytes 0-30000000/50000123", SECOND, Resync(30_000_000)),  # X is a count
    (416, "bytes 0-0/50000123", SECOND, Resync(0)),
    (416, None, SECOND, UploadGone("unreadable_content_range")),
    (416, "bytes 0-12345/50000123", SECOND, UploadGone("unreadable_content_range")),
    (416, "garbage", SECOND, UploadGone("unreadable_content_range")),
    (403, None, SECOND, UploadGone("upload_http_403")),  # the URL expired
    (404, None, SECOND, UploadGone("upload_http_404")),  # no task for this URL
    (500, None, SECOND, RetryChunk("http_500")),
    (502, "bytes 0-9999999/50000123", SECOND, RetryChunk("http_502")),
    (503, None, SECOND, RetryChunk("http_503")),
    (429, None, SECOND, RetryChunk("http_429")),
]


@pytest.mark.parametrize(("status", "content_range", "chunk", "expected"), PUT_TABLE)
def test_put_answer(status: int, content_range: str | None, chunk: tuple[int, int], expected: object) -> None:
    assert on_put(status, content_range, PLAN, *chunk) == expected


@pytest.mark.parametrize("status", [400, 200, 409, 413])
def test_put_answers_that_mean_our_chunk_is_wrong_fail_the_post(status: int) -> None:
    decision = on_put(status, None, PLAN, *SECOND)
    assert isinstance(decision, Fail)
    assert decision.error.code == "invalid_file_upload"
    assert str(status) in decision.error.message


def test_a_chunk_is_retried_with_growing_waits_then_the_post_is_given_back() -> None:
    rng = random.Random(3)
    waits = [after_chunk_retry(n, 2, rng) for n in range(1, MAX_CHUNK_RETRIES + 1)]
    assert all(isinstance(w, float) for w in waits)
    assert waits[0] < waits[-1] <= backoff.TRANSIENT.maximum * 1.2 / 4
    given_back = after_chunk_retry(MAX_CHUNK_RETRIES + 1, 2)
    assert isinstance(given_back, Defer)
    assert (given_back.reason, given_back.failures) == ("chunk_retries_exhausted", 3)


# ------------------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class Status:
    status: str
    fail_reason: str | None = None
    post_ids: tuple[str, ...] = ()
    uploaded_bytes: int | None = None
    log_id: str | None = "log-1"


SIZE = PLAN.video_size

GONE_TABLE: list[tuple[Status, str, object]] = [
    (Status("PUBLISH_COMPLETE"), "upload_http_403", Uploaded()),
    (Status("SEND_TO_USER_INBOX"), "upload_url_expired", Uploaded()),
    (Status("PROCESSING_UPLOAD", uploaded_bytes=SIZE), "upload_http_404", Uploaded()),
    (Status("PROCESSING_UPLOAD", uploaded_bytes=SIZE - 1), "upload_http_403", Reinit("upload_http_403")),
    (Status("PROCESSING_UPLOAD"), "upload_url_expired", Reinit("upload_url_expired")),
    (
        Status("PROCESSING_UPLOAD", uploaded_bytes=10),
        "unreadable_content_range",
        Reinit("unreadable_content_range"),
    ),
    (Status("FAILED", fail_reason="internal"), "upload_http_404", Reinit("upload_http_404")),
]


@pytest.mark.parametrize(("status", "why", "expected"), GONE_TABLE)
def test_after_the_upload_url_is_gone(status: Status, why: str, expected: object) -> None:
    assert after_upload_gone(status, SIZE, why, 0) == expected


def test_a_404_while_tiktok_still_waits_for_bytes_waits_without_a_new_init() -> None:
    decision = after_upload_gone(Status("PROCESSING_UPLOAD", uploaded_bytes=5), SIZE, "upload_http_404", 4)
    assert isinstance(decision, Defer)
    assert (decision.reason, decision.failures) == ("upload_http_404", 5)


STATUS_TABLE: list[tuple[Status, int, int, bool, object]] = [
    # status, attempt, polls, expects a public id → decision
    (
        Status("PUBLISH_COMPLETE", post_ids=("7345",)),
        1,
        3,
        True,
        Published(("7345",), awaiting_post_id=False),
    ),
    (Status("PUBLISH_COMPLETE"), 1, 3, True, Published((), awaiting_post_id=True)),
    (Status("PUBLISH_COMPLETE"), 1, 3, False, Published((), awaiting_post_id=False)),
    (Status("SEND_TO_USER_INBOX"), 1, 0, False, Delivered()),
    (Status("FAILED", fail_reason="internal"), 1, 5, True, StartOver(2, "internal")),
    (Status("FAILED", fail_reason="video_pull_failed"), 2, 0, True, StartOver(3, "video_pull_failed")),
    (Status("FAILED", fail_reason="photo_pull_failed"), 1, 0, False, StartOver(2, "photo_pull_failed")),
    (Status("PROCESSING_UPLOAD"), 1, 0, True, PollAgain(2.0)),
    (Status("PROCESSING_DOWNLOAD"), 1, 15, True, PollAgain(5.0)),
    (Status("PROCESSING_UPLOAD"), 1, 40, False, PollAgain(30.0)),
]


@pytest.mark.parametrize(("status", "attempt", "polls", "public", "expected"), STATUS_TABLE)
def test_status_answer(status: Status, attempt: int, polls: int, public: bool, expected: object) -> None:
    assert on_status(status, attempt=attempt, polls=polls, expects_public_id=public) == expected


@pytest.mark.parametrize(
    ("reason", "attempt", "retryable"),
    [
        ("internal", MAX_PUBLISH_ATTEMPTS, True),  # passing, but out of attempts
        ("file_format_check_failed", 1, False),
        ("spam_risk_text", 1, False),
        (None, 1, False),
    ],
)
def test_a_failed_post_fails_with_tiktoks_reason(reason: str | None, attempt: int, retryable: bool) -> None:
    decision = on_status(
        Status("FAILED", fail_reason=reason), attempt=attempt, polls=0, expects_public_id=True
    )
    assert isinstance(decision, Fail)
    code = reason or "unknown"
    assert (decision.error.code, decision.error.retryable, decision.error.tiktok_log_id) == (
        code,
        retryable,
        "log-1",
    )
    assert code in decision.error.message
