"""A post as the service stores it, the typed patch of its updatable columns, and the account mirror."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

from common.errors import PipelineError
from common.events import PostRequestedData, PostState


@dataclass(frozen=True)
class PostRow:
    post_id: str
    account_id: str
    request: PostRequestedData
    state: PostState
    seq: int
    attempt: int
    failures: int
    correlation_id: str | None
    raw_event: bytes
    raw_key: bytes | None
    publish_at: datetime | None
    next_attempt_at: datetime
    media_size: int | None
    content_type: str | None
    duration_s: float | None
    chunk_size: int | None
    total_chunks: int | None
    publish_id: str | None
    upload_url: str | None
    upload_url_issued_at: datetime | None
    bytes_acked: int
    init_in_doubt: bool
    init_sent_at: datetime | None
    tiktok_status: str | None
    polls: int
    tiktok_post_ids: tuple[str, ...]
    awaiting_post_id: bool
    watch_until: datetime | None
    awaiting_token_version: int | None
    error_code: str | None
    error_message: str | None
    error_retryable: bool | None
    error_log_id: str | None
    progress_emitted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    trace_context: dict[str, str] | None = None
    """W3C headers of the request's trace (``common.tracing``), for the worker's spans."""


class LeaseLost(PipelineError):
    """Another worker owns the post now, or it moved on without us; stop working on it."""

    code = "lease_lost"


class PostPatch(TypedDict, total=False):
    """The columns a worker or webhook may change on a post (mypy checks names and types).

    State, seq, the lease and the request are never patched: they change only through the
    repository's transition, claim and release.
    """

    attempt: int
    failures: int
    media_size: int | None
    content_type: str | None
    duration_s: float | None
    chunk_size: int | None
    total_chunks: int | None
    publish_id: str | None
    upload_url: str | None
    upload_url_issued_at: datetime | None
    bytes_acked: int
    init_in_doubt: bool
    init_sent_at: datetime | None
    tiktok_status: str | None
    polls: int
    tiktok_post_ids: tuple[str, ...]
    awaiting_post_id: bool
    watch_until: datetime | None
    awaiting_token_version: int | None
    error_code: str | None
    error_message: str | None
    error_retryable: bool | None
    error_log_id: str | None


class IntakeOutcome(StrEnum):
    created = "created"
    duplicate = "duplicate"  # same post_id, same payload: a no-op
    conflict = "conflict"  # same post_id, different payload: rejected


@dataclass(frozen=True)
class PostRequest:
    """One decoded request as intake stores it: the data, the original bytes and key, the correlation."""

    post: PostRequestedData
    raw: bytes
    correlation_id: str | None
    key: bytes | None
    trace_context: dict[str, str] | None = None
    """W3C headers of the request's trace (the intake span continuing the producer's), or None."""


@dataclass(frozen=True)
class AccountToken:
    """This service's copy of an account and its newest access token (from auth_service's topics)."""

    account_id: str
    status: str | None
    token_version: int
    ciphertext: str | None
    expires_at: datetime | None
    scopes: tuple[str, ...] = ()
    """What the creator granted (from the account and token events); empty: not known yet."""


def request_hash(post: PostRequestedData) -> str:
    canonical = json.dumps(post.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
