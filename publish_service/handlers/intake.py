"""Consuming ``tiktok.post.requested``: each record becomes a durable post row, or a rejection.

Per batch: one transaction stores the rows (and their first status events, and any rejections with
their dead letters) and only after it commits are the offsets committed. A crash in between means
the records come again, and the post_id check makes the repeat a no-op.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TypeGuard

import asyncpg
import structlog
from pydantic_core import PydanticSerializationError

from common.errors import InvalidInput
from common.events import Envelope, EventType, PostRequestedData, decode, is_text
from common.kafka import ConsumerRecord
from common.kafka.consume import Decoded, Undecodable
from common.tracing import consuming, current_carrier
from publish_service.domain.post import IntakeOutcome, PostRequest
from publish_service.handlers.ports import IntakeStore, IntakeTx
from publish_service.metrics import Metrics

log = structlog.get_logger(__name__)

UNSTORABLE = (asyncpg.DataError, PydanticSerializationError, InvalidInput)
"""What one record can make Postgres, the serialiser or the outbox refuse, every time: never a passing
failure (a lost connection is none of these, and still restarts the loop without committing)."""


RequestEvent = Envelope[PostRequestedData]
Item = Decoded[RequestEvent] | Undecodable


def decode_request(record: ConsumerRecord[bytes, bytes]) -> RequestEvent:
    """The typed request, or ``BadEvent`` (the consume loop hands it over as ``Undecodable``)."""
    return decode(record.value, PostRequestedData, expected_type=EventType.post_requested)


def _salvage_ids(record: ConsumerRecord[bytes, bytes]) -> tuple[str, str, str | None]:
    """post_id, account_id and correlation_id as far as they can be read from a bad record."""
    fallback = f"unparseable:{record.topic}:{record.partition}:{record.offset}"
    account = record.key[:512].decode("utf-8", "replace")[:128] if record.key else "unknown"
    try:
        raw = json.loads(record.value or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return fallback, account, None
    if not isinstance(raw, dict):
        return fallback, account, None
    maybe_data = raw.get("data")
    data: dict[str, object] = maybe_data if isinstance(maybe_data, dict) else {}
    post_id = data.get("post_id")
    account_id = data.get("account_id")
    correlation = raw.get("correlation_id")
    return (
        post_id if _usable(post_id, 128) else fallback,
        account_id if _usable(account_id, 128) else account,
        correlation if _usable(correlation, 200) else None,
    )


def _usable(value: object, limit: int) -> TypeGuard[str]:
    """A string a status event can carry (a lone surrogate would make the rejection itself fail)."""
    return isinstance(value, str) and 0 < len(value) <= limit and is_text(value)


class Intake:
    def __init__(self, repo: IntakeStore, metrics: Metrics) -> None:
        self.repo = repo
        self.metrics = metrics

    async def handle_batch(self, items: Sequence[Item]) -> None:
        """Store every record of the batch in one transaction (the consume loop commits offsets after)."""
        try:
            async with self.repo.transaction() as tx:
                await self._store_batch(tx, items)
        except UNSTORABLE:
            # A record the checks let through still broke the batch, and would break it again on every
            # retry: store the batch once more, a savepoint per record, so only that one is rejected.
            await self._handle_one_by_one(items)

    async def _store_batch(self, tx: IntakeTx, items: Sequence[Item]) -> None:
        """The bad records rejected one by one; the requests stored together (one insert, one outbox
        insert), each with the trace of its own consumer span."""
        requests: list[PostRequest] = []
        for item in items:
            with consuming(item.record):  # the producer's trace goes on, stored with the post for the worker
                if isinstance(item, Undecodable):
                    await self._reject(tx, item)
                else:
                    requests.append(_request(item, current_carrier() or None))
        if not requests:
            return
        known = await tx.accounts_known({r.post.account_id for r in requests})
        outcomes = await tx.record_requests(requests)
        counts: Counter[str] = Counter()
        created: list[str] = []
        for request, outcome in zip(requests, outcomes, strict=True):
            post = request.post
            counts[outcome.value] += 1
            if post.account_id not in known:
                counts["account_not_yet_known"] += 1
                _log_unknown_account(post)
            if outcome is IntakeOutcome.conflict:
                log.warning("post_request_conflict", post_id=post.post_id)
            elif outcome is IntakeOutcome.created:
                created.append(post.post_id)
        for label, n in counts.items():
            self.metrics.requests.labels(label).inc(n)
        # One line and one metric update per batch, not per request: at thousands of requests a second,
        # a log line each cost a quarter of intake's time (cProfile; see README "Performance").
        if created:
            log.info("posts_received", count=len(created), post_ids=created)

    async def _handle_one_by_one(self, items: Sequence[Item]) -> None:
        async with self.repo.transaction() as tx:
            for item in items:
                record = item.record
                try:
                    async with tx.savepoint():
                        await self._handle(tx, item)
                except UNSTORABLE as exc:
                    post_id, account_id, correlation = _salvage_ids(record)
                    message = f"the request could not be stored: {type(exc).__name__}: {exc}"[:500]
                    log.warning(
                        "post_request_unstorable", post_id=post_id, offset=record.offset, error=message
                    )
                    self.metrics.requests.labels("unstorable").inc()
                    await tx.reject_event(
                        post_id=post_id,
                        account_id=account_id,
                        code="unstorable",
                        message=message,
                        raw=record.value,
                        key=record.key,
                        correlation_id=correlation,
                        headers=[
                            ("source_topic", record.topic.encode()),
                            ("source_partition", str(record.partition).encode()),
                            ("source_offset", str(record.offset).encode()),
                        ],
                    )

    async def _handle(self, tx: IntakeTx, item: Item) -> None:
        with consuming(item.record):  # the producer's trace goes on, stored with the post for the worker
            await self._store(tx, item)

    async def _store(self, tx: IntakeTx, item: Item) -> None:
        """One record on its own (the fallback after a batch failed)."""
        if isinstance(item, Undecodable):
            await self._reject(tx, item)
            return
        request = _request(item, current_carrier() or None)
        post = request.post
        known = await tx.account_known(post.account_id)
        outcome = (await tx.record_requests([request]))[0]
        if not known:
            _log_unknown_account(post)
            self.metrics.requests.labels("account_not_yet_known").inc()
        self.metrics.requests.labels(outcome.value).inc()
        if outcome is IntakeOutcome.conflict:
            log.warning("post_request_conflict", post_id=post.post_id)
        elif outcome is IntakeOutcome.created:
            log.info(
                "post_received", post_id=post.post_id, account_id=post.account_id, scheduled=post.publish_at
            )

    async def _reject(self, tx: IntakeTx, item: Undecodable) -> None:
        """Reject and dead-letter a record that is not a valid request."""
        record = item.record
        exc = item.error
        post_id, account_id, correlation = _salvage_ids(record)
        log.warning(
            "post_request_bad",
            error_code=exc.code,
            error=exc.message,
            post_id=post_id,
            offset=record.offset,
        )
        self.metrics.requests.labels(exc.code).inc()
        await tx.reject_event(
            post_id=post_id,
            account_id=account_id,
            code=exc.code,
            message=exc.message,
            raw=record.value,  # the original, even a tombstone's null
            key=record.key,
            correlation_id=correlation,
            headers=[
                ("source_topic", record.topic.encode()),
                ("source_partition", str(record.partition).encode()),
                ("source_offset", str(record.offset).encode()),
            ],
        )


def _request(item: Decoded[RequestEvent], trace_context: dict[str, str] | None) -> PostRequest:
    envelope = item.event
    record = item.record
    return PostRequest(envelope.data, record.value or b"", envelope.correlation_id, record.key, trace_context)


def _log_unknown_account(post: PostRequestedData) -> None:
    # Not rejected here: a post can overtake its account's connect event. The worker waits
    # PUBLISH_UNKNOWN_ACCOUNT_GRACE_S for the account, then rejects it as unknown_account.
    log.info("post_request_account_not_yet_known", post_id=post.post_id, account_id=post.account_id)
