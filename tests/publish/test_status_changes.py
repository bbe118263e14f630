"""A post's change and its status event commit together, in one statement when the worker's copy of
the row is current and in a transaction that reads the row first when it is not.

Against the real PostgreSQL schema: the row after the change, the status events in the outbox (what
the relay puts on the topic, in id order), and which path was taken (the one-statement helper is
wrapped to see whether it changed the row).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.events import ErrorInfo, PostRequestedData, PostState, PostStatusData, Progress, decode
from publish_service.adapters import posts as posts_module
from publish_service.adapters.repository import Repository, Topics
from publish_service.domain.post import LeaseLost, PostPatch, PostRequest, PostRow
from tests.publish.payloads import post_request

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]

SCHEMA = "publish"
TOPICS = Topics(status="status", dlq="dlq", refresh="refresh")


@pytest.fixture
def pool(publish_pool: Any) -> Any:
    return publish_pool


@pytest.fixture
def one_statement(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each try of the one-statement path, whether it changed the row."""
    tries: list[bool] = []
    real = posts_module.change_and_enqueue

    async def spy(*args: Any, **kwargs: Any) -> Any:
        record = await real(*args, **kwargs)
        tries.append(record is not None)
        return record

    monkeypatch.setattr(posts_module, "change_and_enqueue", spy)
    return tries


class Counted:
    def __init__(self) -> None:
        self.transitions: list[str] = []
        self.errors: list[tuple[str, str]] = []

    def repository(self, pool: Any) -> Repository:
        return Repository(
            pool,
            SCHEMA,
            TOPICS,
            on_transition=self.transitions.append,
            on_error=lambda state, code: self.errors.append((state, code)),
        )


async def _claimed(pool: Any, repo: Repository, post_id: str) -> PostRow:
    post = PostRequestedData.model_validate(post_request(post_id, "s3://media/v.mp4"))
    async with repo.transaction() as tx:
        await tx.record_requests([PostRequest(post, json.dumps({"post_id": post_id}).encode(), None, None)])
    await pool.execute(f"DELETE FROM {SCHEMA}.outbox")
    row = await repo.claim("worker-1", 30)
    assert row is not None and row.post_id == post_id
    return row


async def _events(pool: Any) -> list[PostStatusData]:
    rows = await pool.fetch(f"SELECT value FROM {SCHEMA}.outbox WHERE topic = $1 ORDER BY id", TOPICS.status)
    return [decode(r["value"], PostStatusData).data for r in rows]


def _expected_event(repo: Repository, row: PostRow, progress: Progress | None = None) -> PostStatusData:
    """What the read-first path builds from the row as stored."""
    record = repo.posts.events.status_event(row, progress=progress)
    return decode(record.value, PostStatusData).data


async def test_progress_from_a_current_row_is_one_statement_and_the_event_of_the_stored_row(
    pool: Any, one_statement: list[bool]
) -> None:
    repo = Repository(pool, SCHEMA, TOPICS)
    row = await _claimed(pool, repo, "p-1")
    progress = Progress(bytes_sent=10, bytes_total=30)

    new = await repo.emit_update(row, owner="worker-1", progress=progress, patch=PostPatch(bytes_acked=10))

    assert one_statement == [True]
    assert (new.seq, new.state, new.bytes_acked) == (row.seq + 1, row.state, 10)
    assert new == await repo.get("p-1")
    assert await _events(pool) == [_expected_event(repo, new, progress)]


async def test_a_row_changed_by_someone_else_is_read_first_and_the_event_says_what_is_stored(
    pool: Any, one_statement: list[bool]
) -> None:
    repo = Repository(pool, SCHEMA, TOPICS)
    row = await _claimed(pool, repo, "p-1")
    # A webhook's update (no lease) lands between the worker's read and its progress event.
    await repo.emit_update(row, owner=None, patch=PostPatch(tiktok_post_ids=("v-1",)))
    progress = Progress(bytes_sent=10, bytes_total=30)

    new = await repo.emit_update(row, owner="worker-1", progress=progress, patch=PostPatch(bytes_acked=10))

    assert one_statement == [True, False]  # the webhook's went in one; the stale row's did not
    assert (new.seq, new.tiktok_post_ids, new.bytes_acked) == (row.seq + 2, ("v-1",), 10)
    events = await _events(pool)
    assert [e.seq for e in events] == [row.seq + 1, row.seq + 2]
    assert events[1] == _expected_event(repo, new, progress)
    assert events[1].tiktok_post_ids == ["v-1"]


async def test_a_lost_lease_changes_nothing_and_sends_nothing(pool: Any, one_statement: list[bool]) -> None:
    repo = Repository(pool, SCHEMA, TOPICS)
    row = await _claimed(pool, repo, "p-1")
    await repo.release(row, "worker-1", 0.0)
    taken = await repo.claim("worker-2", 30)
    assert taken is not None

    with pytest.raises(LeaseLost):
        await repo.emit_update(row, owner="worker-1", progress=None, patch=PostPatch(bytes_acked=10))
    with pytest.raises(LeaseLost):
        await repo.transition(row, PostState.validating, owner="worker-1")

    assert one_statement == [False, False]
    assert await _events(pool) == []
    assert await repo.get("p-1") == taken


async def test_a_transition_is_one_statement_counted_once(pool: Any, one_statement: list[bool]) -> None:
    counted = Counted()
    repo = counted.repository(pool)
    row = await _claimed(pool, repo, "p-1")
    counted.transitions.clear()

    new = await repo.transition(row, PostState.validating, owner="worker-1", patch=PostPatch(attempt=2))

    assert one_statement == [True]
    assert (new.state, new.seq, new.attempt) == (PostState.validating, row.seq + 1, 2)
    assert counted.transitions == ["validating"]
    assert await _events(pool) == [_expected_event(repo, new)]


async def test_a_failure_is_read_first_and_its_error_counted_once(
    pool: Any, one_statement: list[bool]
) -> None:
    counted = Counted()
    repo = counted.repository(pool)
    row = await _claimed(pool, repo, "p-1")
    row = await repo.transition(row, PostState.validating, owner="worker-1")
    error = ErrorInfo(code="spam_risk_too_many_posts", message="daily cap", retryable=False)

    new = await repo.transition(row, PostState.failed, owner="worker-1", error=error)

    assert one_statement == [True]  # validating only: failed takes the transaction
    assert (new.state, new.error_code) == (PostState.failed, "spam_risk_too_many_posts")
    assert counted.errors == [("failed", "spam_risk_too_many_posts")]
    events = await _events(pool)
    assert [e.state for e in events] == [PostState.validating, PostState.failed]
    assert events[1].error == error
