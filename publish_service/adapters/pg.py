"""What the publish repository's aggregates share: the connection protocol, topics, the row mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from common.events import PostRequestedData, PostState
from publish_service.domain.post import LeaseLost, PostPatch, PostRow

__all__ = ["Connection", "Executor", "LeaseLost", "Topics", "post_row", "set_clauses"]


class Executor(Protocol):
    """An asyncpg pool or connection: what one statement needs."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetch(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def execute(self, query: str, *args: Any) -> Any: ...


class Connection(Executor, Protocol):
    """An asyncpg connection: statements plus (nested) transactions."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


@dataclass(frozen=True)
class Topics:
    status: str
    dlq: str
    refresh: str


def post_row(r: Mapping[str, Any]) -> PostRow:
    return PostRow(
        post_id=r["post_id"],
        account_id=r["account_id"],
        request=PostRequestedData.model_validate_json(r["request"]),
        state=PostState(r["state"]),
        seq=r["seq"],
        attempt=r["attempt"],
        failures=r["failures"],
        correlation_id=r["correlation_id"],
        raw_event=bytes(r["raw_event"]),
        raw_key=bytes(r["raw_key"]) if r["raw_key"] is not None else None,
        publish_at=r["publish_at"],
        next_attempt_at=r["next_attempt_at"],
        media_size=r["media_size"],
        content_type=r["content_type"],
        duration_s=r["duration_s"],
        chunk_size=r["chunk_size"],
        total_chunks=r["total_chunks"],
        publish_id=r["publish_id"],
        upload_url=r["upload_url"],
        upload_url_issued_at=r["upload_url_issued_at"],
        bytes_acked=r["bytes_acked"],
        init_in_doubt=r["init_in_doubt"],
        init_sent_at=r["init_sent_at"],
        tiktok_status=r["tiktok_status"],
        polls=r["polls"],
        tiktok_post_ids=tuple(r["tiktok_post_ids"] or ()),
        awaiting_post_id=r["awaiting_post_id"],
        watch_until=r["watch_until"],
        awaiting_token_version=r["awaiting_token_version"],
        error_code=r["error_code"],
        error_message=r["error_message"],
        error_retryable=r["error_retryable"],
        error_log_id=r["error_log_id"],
        progress_emitted_at=r["progress_emitted_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        trace_context=_trace_context(r.get("trace_context")),
    )


def _trace_context(raw: str | None) -> dict[str, str] | None:
    if not raw:
        return None
    loaded = json.loads(raw)
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else None


def set_clauses(patch: PostPatch, start: int) -> tuple[str, list[Any]]:
    """``, col = $n`` for each patched column (names come from :class:`PostPatch`, checked by mypy)."""
    clauses, values = [], []
    for i, (name, value) in enumerate(patch.items(), start=start):
        clauses.append(f"{name} = ${i}")
        values.append(list(value) if isinstance(value, tuple) else value)
    return "".join(f", {c}" for c in clauses), values
