"""What the worker does next, decided from what TikTok answered. Pure: the worker only executes.

Three decisions, each a function of an answer and the post's counters:

- :func:`on_tiktok_error`: an API call failed → :class:`Refresh`, :class:`Defer` or :class:`Fail`;
- :func:`on_put` (and :func:`after_chunk_retry`): a chunk PUT's answer → the next offset, a resync,
  the same chunk again, a dead upload URL, or a failure; :func:`after_upload_gone`: the status fetch
  that follows a dead URL → the upload is complete, wait, or :class:`Reinit`;
- :func:`on_status`: a status fetch while processing → the post's transition.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from common.events import ErrorInfo
from common.tiktok.chunks import ChunkPlan, resync_offset
from common.tiktok.errors import Action, TikTokError
from publish_service.domain import backoff

MAX_CHUNK_RETRIES = 8
MAX_PUBLISH_ATTEMPTS = 3
RETRYABLE_FAIL_REASONS = frozenset({"internal", "video_pull_failed", "photo_pull_failed"})


class StatusAnswer(Protocol):
    """What a status fetch returned (``common.tiktok.client.PublishStatus`` has this shape)."""

    @property
    def status(self) -> str: ...
    @property
    def fail_reason(self) -> str | None: ...
    @property
    def post_ids(self) -> Sequence[str]: ...
    @property
    def uploaded_bytes(self) -> int | None: ...
    @property
    def log_id(self) -> str | None: ...


# ------------------------------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Defer:
    """Give the lease back; try again in ``delay_s``. ``failures`` is the post's new count, if any."""

    delay_s: float
    reason: str
    failures: int | None = None


@dataclass(frozen=True)
class Refresh:
    """The access token was refused: ask for a new one and wait for it."""

    reason: str


@dataclass(frozen=True)
class Fail:
    error: ErrorInfo


@dataclass(frozen=True)
class Reinit:
    """The old upload task cannot complete: forget publish_id and upload_url, init again."""

    why: str


@dataclass(frozen=True)
class Advance:
    """The chunk was accepted; go on from ``offset`` (``sent`` bytes were new)."""

    offset: int
    sent: int


@dataclass(frozen=True)
class Resync:
    """TikTok is elsewhere (416): go on from where its Content-Range says it is."""

    offset: int


@dataclass(frozen=True)
class RetryChunk:
    """5xx or 429 on a PUT: the same chunk again."""

    reason: str


@dataclass(frozen=True)
class UploadGone:
    """The upload URL no longer works; a status fetch decides what follows."""

    why: str


@dataclass(frozen=True)
class Uploaded:
    """TikTok has every byte: the post is processing."""


@dataclass(frozen=True)
class Published:
    post_ids: tuple[str, ...]
    awaiting_post_id: bool


@dataclass(frozen=True)
class Delivered:
    """The draft is in the creator's inbox."""


@dataclass(frozen=True)
class StartOver:
    """TikTok failed the post for a passing reason: a new attempt from validation."""

    attempt: int
    fail_reason: str


@dataclass(frozen=True)
class PollAgain:
    delay_s: float


# ------------------------------------------------------------------------------------------ API errors


def error_info(exc: TikTokError) -> ErrorInfo:
    # An answer without a TikTok code (empty, text) keeps our category, e.g. tiktok_config_error.
    return ErrorInfo(
        code=exc.tiktok_code or exc.code,
        message=exc.message,
        retryable=exc.retriable,
        tiktok_log_id=exc.log_id,
    )


def cap_backoff(cap_retry_s: float) -> backoff.Backoff:
    return backoff.Backoff(initial=cap_retry_s, factor=2.0, maximum=max(cap_retry_s, 6 * 3600.0))


def on_tiktok_error(
    exc: TikTokError, failures: int, *, cap_retry_s: float, rng: random.Random | None = None
) -> Refresh | Defer | Fail:
    """TikTok's verdict on a call, given the post's failures so far (spec §6.3)."""
    match exc.action:
        case Action.refresh:
            return Refresh(exc.tiktok_code)
        case Action.retry:
            failures += 1
            if failures > backoff.MAX_TRANSIENT_ATTEMPTS:
                return Fail(error_info(exc))
            # A 429 without a body still says "rate limited": it waits like one.
            limited = exc.tiktok_code == "rate_limit_exceeded" or exc.status == 429
            policy = backoff.RATE_LIMITED if limited else backoff.TRANSIENT
            return Defer(policy.delay(failures, rng), exc.label, failures)
        case Action.retry_later:
            failures += 1
            if failures > backoff.MAX_CAP_ATTEMPTS:
                return Fail(error_info(exc))
            return Defer(cap_backoff(cap_retry_s).delay(failures, rng), exc.label, failures)
        case _:
            return Fail(error_info(exc))


# ------------------------------------------------------------------------------------------ chunk PUTs


def on_put(
    status: int, content_range: str | None, plan: ChunkPlan, first: int, last: int
) -> Advance | Resync | RetryChunk | UploadGone | Fail:
    """A chunk PUT's answer (spec §5.2) for the chunk ``first``..``last``."""
    if status >= 500 or status == 429:
        return RetryChunk(f"http_{status}")
    if status == 201:
        return Advance(plan.video_size, last - first + 1)
    if status == 206:
        return Advance(last + 1, last - first + 1)
    if status == 416:
        resumed = resync_offset(plan, content_range)
        return UploadGone("unreadable_content_range") if resumed is None else Resync(resumed)
    if status in (403, 404):
        return UploadGone(f"upload_http_{status}")
    return Fail(ErrorInfo(code="invalid_file_upload", message=f"TikTok refused a chunk with HTTP {status}"))


def after_chunk_retry(retries: int, failures: int, rng: random.Random | None = None) -> float | Defer:
    """The wait before sending a chunk again (``retries`` so far), or give the post back."""
    if retries > MAX_CHUNK_RETRIES:
        return Defer(backoff.TRANSIENT.delay(failures + 1, rng), "chunk_retries_exhausted", failures + 1)
    return backoff.TRANSIENT.delay(retries, rng) / 4


def after_upload_gone(
    status: StatusAnswer, video_size: int, why: str, failures: int, rng: random.Random | None = None
) -> Uploaded | Defer | Reinit:
    """Whether the old publish can still complete (wait for it) or not (then, and only then, re-init)."""
    complete = status.status in ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX") or (
        status.status == "PROCESSING_UPLOAD" and (status.uploaded_bytes or 0) >= video_size
    )
    if complete:
        return Uploaded()
    if status.status == "PROCESSING_UPLOAD" and why == "upload_http_404":
        # TikTok still waits for bytes but does not know this URL: odd; retry later, no new init.
        return Defer(backoff.TRANSIENT.delay(failures + 1, rng), why, failures + 1)
    return Reinit(why)


# ------------------------------------------------------------------------------------------ status


def on_status(
    status: StatusAnswer, *, attempt: int, polls: int, expects_public_id: bool
) -> Published | Delivered | StartOver | Fail | PollAgain:
    """A status fetch of a processing post (spec §4.6, §4.8)."""
    match status.status:
        case "PUBLISH_COMPLETE":
            ids = tuple(status.post_ids)
            return Published(ids, awaiting_post_id=not ids and expects_public_id)
        case "SEND_TO_USER_INBOX":
            return Delivered()
        case "FAILED":
            reason = status.fail_reason or "unknown"
            retryable = reason in RETRYABLE_FAIL_REASONS
            if retryable and attempt < MAX_PUBLISH_ATTEMPTS:
                return StartOver(attempt + 1, reason)
            return Fail(
                ErrorInfo(
                    code=reason,
                    message=f"TikTok failed the post: {reason}",
                    retryable=retryable,
                    tiktok_log_id=status.log_id,
                )
            )
        case _:
            return PollAgain(backoff.status_poll_delay(polls))
