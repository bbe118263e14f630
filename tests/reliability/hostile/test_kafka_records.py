"""Each hostile Kafka record is answered clearly, nothing is lost, and the consumer goes on.

A rejected record gets a ``rejected`` status event whose ``error.code`` and message name the problem,
and (unless only TikTok could refuse it) a dead letter with the original bytes and ``error_code`` /
``error_message`` headers. A hostile-looking but legal record is published with its text intact.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.reliability.hostile.harness import (
    BROKER_LIMIT_CASE_IDS,
    GOOD_CAPTION,
    KAFKA_CASE_IDS,
    MARKS,
    Run,
    log_text,
    sandbox_posts,
)
from tests.reliability.hostile.kafka_cases import SQL
from tests.reliability.hostile.state_cases import STATE_CASES, StateCase

pytestmark = MARKS


@pytest.mark.parametrize("case", KAFKA_CASE_IDS)
async def test_hostile_record_is_answered_clearly(run: Run, case: str) -> None:
    out = run.outcome(case)
    case = out.sent.case
    states = [(s["state"], (s.get("error") or {}).get("code")) for s in out.statuses]
    if case.accepted:
        assert ("published", None) in states, states
        assert not out.dead_letters
        posts = await sandbox_posts(run.pipeline)
        captions = [p["post_info"].get("title") for p in posts]
        assert case.expect_caption in captions, captions
        published = next(s for s in out.statuses if s["state"] == "published")
        assert published["metadata"] == {"q": SQL, "nested": {"x": [SQL]}}
        return
    rejected = [s for s in out.statuses if s["state"] == case.state and s["error"]["code"] == case.code]
    assert rejected, (
        f"no {case.state} status with code {case.code!r} for {out.sent.status_post_id!r}: {states}"
    )
    message = rejected[0]["error"]["message"]
    assert case.phrase.lower() in message.lower(), message
    if not case.dlq:  # failed at TikTok after it was accepted: a status, no dead letter
        assert not out.dead_letters
        return
    assert out.dead_letters, "no dead letter"
    letter = next(r for r in out.dead_letters if dict(r.headers)["error_code"] == case.code.encode())
    headers = dict(letter.headers)
    assert case.phrase.lower().encode() in headers["error_message"].lower()
    assert all(len(s["account_id"]) <= 128 for s in rejected), "an account id salvaged without a bound"
    if case.id in BROKER_LIMIT_CASE_IDS:
        # Too big to copy with our headers: the letter points at the original instead.
        assert letter.value is None and len(letter.key or b"") <= 512 * 1024
        assert headers["original_size"] == str(len(out.sent.value or b"")).encode()
        assert b"too large to copy" in headers["error_message"]
        return
    assert letter.value == out.sent.value, "the DLQ copy is not the original bytes"
    assert letter.key == (out.sent.key or b"")


async def test_a_valid_post_behind_the_corpus_is_published_byte_exact(run: Run) -> None:
    states = [s["state"] for s in run.statuses(run.good_post_id)]
    assert states[-1] == "published", states
    posts = [p for p in await sandbox_posts(run.pipeline) if p["post_info"].get("title") == GOOD_CAPTION]
    assert len(posts) == 1 and posts[0]["sha256"] == run.good_sha256
    assert posts[0]["status"] == "PUBLISH_COMPLETE"


async def test_a_repeated_identical_request_is_a_no_op(run: Run) -> None:
    """The first request of ``dup-conflict`` came twice (a new event_id, the same data): one post, one
    ``received``; only the conflicting third is rejected as a duplicate, and nothing else is dead-lettered."""
    first = run.statuses("dup-conflict")
    codes = [(s["state"], (s.get("error") or {}).get("code")) for s in first]
    assert codes.count(("received", None)) == 1, codes
    assert codes.count(("rejected", "duplicate_post_id_conflict")) == 1, codes
    assert ("rejected", "wrong_format") in codes
    letters = [r for r in run.dlq() if b'"dup-conflict"' in (r.value or b"")]
    assert sorted(dict(r.headers)["error_code"] for r in letters) == [
        b"duplicate_post_id_conflict",
        b"wrong_format",
    ]


@pytest.mark.parametrize("case", STATE_CASES, ids=[c.id for c in STATE_CASES])
async def test_hostile_state_record_is_skipped_and_named(run: Run, case: StateCase) -> None:
    """Skipped with a log line naming its code (and, in publish_service, counted); never a crashed or
    stalled reader: both services stay ready and the valid post behind the corpus is published."""
    partition, offset = run.state_sent[case.id]
    event = "refresh_request_invalid" if case.service == "auth_service" else "state_event_bad"
    lines = [
        json.loads(line) for line in log_text(run.pipeline, case.service).splitlines() if f'"{event}"' in line
    ]
    named = [
        e
        for e in lines
        if e.get("offset") == offset
        and e.get("partition") == partition
        and e.get("topic", run.pipeline.prefix + case.topic) == run.pipeline.prefix + case.topic
    ]
    assert named, f"no {event} line for {case.id} at {partition}:{offset}"
    assert named[0]["error_code"] == case.code, named


async def test_the_state_readers_go_on_after_the_hostile_records(
    run: Run, http: aiohttp.ClientSession
) -> None:
    p = run.pipeline
    for base in (p.auth_url, p.publish_url):
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200, await r.text()


async def test_rejections_are_logged_with_their_code(run: Run) -> None:
    log = log_text(run.pipeline, "publish_service")
    for code in (
        "not_json",
        "too_deep",
        "wrong_schema",
        "too_large",
        "wrong_format",
        "duration_too_long",
    ):
        assert f'"error_code": "{code}"' in log, f"no log line names {code}"
