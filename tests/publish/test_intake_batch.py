"""Intake's batch store: one multi-row insert and one outbox insert keep every per-record outcome.

Against the real PostgreSQL schema: the rows stored, and the outbox rows (what the relay puts on the
topics, in id order), for a batch holding new posts, a scheduled one, repeats of a post from the same
batch and of one stored by an earlier batch, with the same payload and with a different one.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.events import PostRequestedData, PostStatusData, decode
from publish_service.adapters.repository import Repository, Topics
from publish_service.domain.post import IntakeOutcome, PostRequest
from tests.publish.payloads import post_request

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]

SCHEMA = "publish"
TOPICS = Topics(status="status", dlq="dlq", refresh="refresh")


@pytest.fixture
def pool(publish_pool: Any) -> Any:
    return publish_pool


def _request(post_id: str, **overrides: Any) -> PostRequest:
    post = PostRequestedData.model_validate(post_request(post_id, "s3://media/v.mp4", **overrides))
    raw = json.dumps({"post_id": post_id, **overrides}, default=str).encode()
    return PostRequest(post, raw, f"corr-{post_id}", b"acc-1")


async def _store(repo: Repository, requests: list[PostRequest]) -> list[IntakeOutcome]:
    async with repo.transaction() as tx:
        return await tx.record_requests(requests)


async def _outbox(pool: Any) -> list[tuple[str, str, int, str, str | None]]:
    """(topic, key, seq, state, error code) of each outbox row, in id order; DLQ rows carry their code."""
    rows = await pool.fetch(f"SELECT topic, key, value, headers FROM {SCHEMA}.outbox ORDER BY id")
    out = []
    for r in rows:
        if r["topic"] == TOPICS.status:
            data = decode(r["value"], PostStatusData).data
            code = data.error.code if data.error else None
            out.append((r["topic"], bytes(r["key"]).decode(), data.seq, data.state.value, code))
        else:
            headers = {name: base64.b64decode(value).decode() for name, value in json.loads(r["headers"])}
            out.append((r["topic"], bytes(r["key"]).decode(), 0, "dead_letter", headers["error_code"]))
    return out


async def test_one_batch_with_new_scheduled_duplicate_and_conflicting_posts(pool: Any) -> None:
    repo = Repository(pool, SCHEMA, TOPICS)
    assert await _store(repo, [_request("old")]) == [IntakeOutcome.created]
    await pool.execute(f"DELETE FROM {SCHEMA}.outbox")

    later = datetime.now(UTC) + timedelta(hours=1)
    outcomes = await _store(
        repo,
        [
            _request("a", caption="first"),
            _request("b", publish_at=later.isoformat()),
            _request("a", caption="first"),  # the same request again, in the same batch
            _request("a", caption="changed"),  # the same post_id, another request
            _request("old"),  # stored by the earlier batch, same payload
            _request("old", caption="other"),  # stored by the earlier batch, another payload
            _request("c"),
        ],
    )
    assert outcomes == [
        IntakeOutcome.created,
        IntakeOutcome.created,
        IntakeOutcome.duplicate,
        IntakeOutcome.conflict,
        IntakeOutcome.duplicate,
        IntakeOutcome.conflict,
        IntakeOutcome.created,
    ]
    rows = {
        r["post_id"]: r
        for r in await pool.fetch(f"SELECT post_id, state, seq, request, next_attempt_at FROM {SCHEMA}.posts")
    }
    assert {k: (r["state"], r["seq"]) for k, r in rows.items()} == {
        "old": ("received", 2),
        "a": ("received", 2),
        "b": ("scheduled", 2),
        "c": ("received", 1),
    }
    # The originals go on: a conflicting request never replaces what was stored.
    assert json.loads(rows["a"]["request"])["caption"] == "first"
    assert json.loads(rows["old"]["request"]).get("caption") is None
    assert rows["b"]["next_attempt_at"] >= later - timedelta(seconds=1)

    events = await _outbox(pool)
    status = [(key, seq, state, code) for topic, key, seq, state, code in events if topic == TOPICS.status]
    assert status == [
        ("a", 1, "received", None),
        ("b", 1, "received", None),
        ("b", 2, "scheduled", None),
        ("a", 2, "rejected", "duplicate_post_id_conflict"),
        ("old", 2, "rejected", "duplicate_post_id_conflict"),
        ("c", 1, "received", None),
    ]
    letters = [(key, code) for topic, key, _, _, code in events if topic == TOPICS.dlq]
    assert letters == [("acc-1", "duplicate_post_id_conflict")] * 2


async def test_a_batch_stored_twice_changes_nothing_the_second_time(pool: Any) -> None:
    """A crash after the commit and before the offset commit: the same batch comes again."""
    repo = Repository(pool, SCHEMA, TOPICS)
    batch = [_request(f"p-{i}") for i in range(50)]
    assert await _store(repo, batch) == [IntakeOutcome.created] * 50
    before = await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox")
    assert await _store(repo, batch) == [IntakeOutcome.duplicate] * 50
    assert await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox") == before == 50
    assert await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.posts") == 50


async def test_a_batch_writes_the_same_events_as_a_request_stored_alone(pool: Any) -> None:
    repo = Repository(pool, SCHEMA, TOPICS)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    fields = {"metadata": {"campaign": "x"}, "caption": "hi", "publish_at": later}
    alone = _request("alone", **fields)
    async with repo.transaction() as tx:
        await tx.record_request(alone.post, alone.raw, alone.correlation_id, alone.key)
    await _store(repo, [_request("batched", **fields)])

    rows = await pool.fetch(f"SELECT key, value, headers FROM {SCHEMA}.outbox ORDER BY id")
    by_post: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        envelope = json.loads(r["value"])
        data = envelope["data"]
        assert data.pop("post_id") == bytes(r["key"]).decode()
        header_names = [name for name, _ in json.loads(r["headers"])]
        by_post.setdefault(bytes(r["key"]).decode(), []).append(
            {"data": data, "type": envelope["type"], "correlation": envelope["correlation_id"] is not None,
             "headers": header_names}
        )  # fmt: skip
    assert [e["data"]["state"] for e in by_post["alone"]] == ["received", "scheduled"]
    assert by_post["batched"] == by_post["alone"]
