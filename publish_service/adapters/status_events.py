"""The status events of posts: what a row says on ``tiktok.post.status``, ready for the outbox."""

from __future__ import annotations

from collections.abc import Callable

from common.events import (
    ErrorInfo,
    EventType,
    PostRequestedData,
    PostState,
    PostStatusData,
    Progress,
    encode,
)
from common.outbox import OutboxRecord, enqueue
from publish_service.adapters.pg import Executor
from publish_service.domain.post import PostRow


class StatusEvents:
    """Builds and enqueues status events; counts transitions and errors for the metrics."""

    def __init__(
        self,
        schema: str,
        status_topic: str,
        on_transition: Callable[[str], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self._schema = schema
        self._status_topic = status_topic
        self._on_transition = on_transition
        self._on_error = on_error or (lambda _state, _code: None)

    def counted(self, state: str) -> None:
        if self._on_transition is not None:
            self._on_transition(state)

    def status_event(
        self,
        row: PostRow,
        *,
        progress: Progress | None = None,
        error: ErrorInfo | None = None,
        state: PostState | None = None,
        seq: int | None = None,
    ) -> OutboxRecord:
        """The status event of ``row`` (or of ``state``/``seq`` given here), ready for the outbox."""
        if (
            error is None
            and row.error_code
            and (state or row.state) in (PostState.failed, PostState.rejected)
        ):
            error = ErrorInfo(
                code=row.error_code,
                message=row.error_message or "",
                retryable=bool(row.error_retryable),
                tiktok_log_id=row.error_log_id,
            )
        data = PostStatusData(
            post_id=row.post_id,
            account_id=row.account_id,
            seq=row.seq if seq is None else seq,
            state=state or row.state,
            attempt=row.attempt,
            progress=progress,
            publish_id=row.publish_id,
            tiktok_post_ids=list(row.tiktok_post_ids),
            error=error,
            metadata=row.request.metadata,
        )
        value, headers = encode(EventType.post_status, data, correlation_id=row.correlation_id)
        if error is not None and data.state in (PostState.failed, PostState.rejected):
            self._on_error(data.state.value, error.code)
        return OutboxRecord(self._status_topic, row.post_id, value, headers)

    def first_events(
        self,
        post: PostRequestedData,
        correlation_id: str | None,
        *,
        scheduled: bool,
        trace_context: dict[str, str] | None = None,
    ) -> list[OutboxRecord]:
        """The status events of a post just stored: ``received``, and ``scheduled`` if it waits (what
        :meth:`status_event` makes of the new row, without reading the row back)."""
        states = [PostState.received, PostState.scheduled] if scheduled else [PostState.received]
        events = []
        for seq, state in enumerate(states, start=1):
            data = PostStatusData(
                post_id=post.post_id,
                account_id=post.account_id,
                seq=seq,
                state=state,
                attempt=1,
                tiktok_post_ids=[],
                metadata=post.metadata,
            )
            value, headers = encode(EventType.post_status, data, correlation_id=correlation_id)
            events.append(OutboxRecord(self._status_topic, post.post_id, value, headers, trace_context))
            self.counted(state.value)
        return events

    async def emit(
        self,
        db: Executor,
        row: PostRow,
        *,
        progress: Progress | None = None,
        error: ErrorInfo | None = None,
        state: PostState | None = None,
        seq: int | None = None,
    ) -> None:
        event = self.status_event(row, progress=progress, error=error, state=state, seq=seq)
        await enqueue(db, self._schema, event.topic, event.key, event.value, event.headers)
