"""Bad input never stalls the consumer: a `rejected` status naming the problem, the bytes to the DLQ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.publish.harness import Harness, running_service
from tests.publish.payloads import post_request

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


def _dlq_codes(harness: Harness) -> dict[bytes | None, str]:
    return {value: dict(headers)["error_code"].decode() for value, headers in harness.log.dlq}


async def test_bad_events_are_rejected_and_dead_lettered(
    harness: Harness, video_3s: Path, tmp_path: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/ok.mp4", video_3s)
    text = tmp_path / "notes.mp4"
    text.write_bytes(b"this is not a video at all, just text pretending" * 10)
    fake = await harness.put_file("videos/fake.mp4", text)
    async with running_service(harness.settings()):
        await harness.request_post(raw=b"{not json", key="acc-1")
        wrong_schema = json.dumps(
            {
                "type": "tiktok.post.requested",
                "version": 1,
                "event_id": "0" * 32,
                "occurred_at": "2026-11-22T00:00:00Z",
                "data": {"post_id": "bad-schema", "account_id": "acc-1"},
            }
        ).encode()
        await harness.request_post(raw=wrong_schema, key="acc-1")
        await harness.request_post(raw=b'{"pad": "' + b"x" * 300_000 + b'"}', key="acc-1")
        await harness.request_post(post_request("bad-account", video.uri, account_id="nobody"))
        await harness.request_post(post_request("bad-missing", f"s3://{harness.bucket}/nope.mp4"))
        await harness.request_post(post_request("bad-format", fake.uri))
        await harness.request_post(post_request("bad-bucket", "s3://other-bucket/x.mp4"))
        # The consumer goes on: a good post after all of them is published.
        await harness.request_post(post_request("good", video.uri))
        await harness.wait_state("good", "published")
        for post_id, code in [
            ("bad-schema", "wrong_schema"),
            ("bad-account", "unknown_account"),
            ("bad-missing", "missing_object"),
            ("bad-format", "wrong_format"),
            ("bad-bucket", "bucket_not_allowed"),
        ]:
            rejected = await harness.wait_state(post_id, "rejected")
            assert rejected.error is not None and rejected.error.code == code, (post_id, rejected.error)
        unparseable = [p for p in harness.log.events if p.startswith("unparseable:")]
        codes = sorted(harness.log.last(p).error.code for p in unparseable)  # type: ignore[union-attr]
        assert codes == ["not_json", "too_large"]
    dlq = _dlq_codes(harness)
    assert dlq[b"{not json"] == "not_json"
    assert dlq[wrong_schema] == "wrong_schema"
    assert sorted(dlq.values()) == sorted(
        [
            "not_json",
            "wrong_schema",
            "too_large",
            "unknown_account",
            "missing_object",
            "wrong_format",
            "bucket_not_allowed",
        ]
    )
    assert len(await harness.sandbox.control.posts()) == 1


async def test_same_post_id_twice_is_a_no_op_and_a_different_payload_is_rejected(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/dup.mp4", video_3s)
    post = post_request("dup-1", video.uri, caption="first")
    async with running_service(harness.settings()):
        await harness.request_post(post)
        await harness.request_post(post)
        await harness.request_post({**post, "caption": "changed"})
        conflict = await harness.wait_event(
            "dup-1", lambda e: e.error and e.error.code == "duplicate_post_id_conflict"
        )
        await harness.wait_state("dup-1", "published")
    assert conflict.state.value == "rejected"
    states = harness.log.states("dup-1")
    assert states.count("received") == 1 and states.count("published") == 1
    assert len(await harness.sandbox.control.posts()) == 1
    assert [dict(h)["error_code"] for _, h in harness.log.dlq] == [b"duplicate_post_id_conflict"]


async def test_creator_rules_are_checked_before_any_byte_is_sent(harness: Harness, video_3s: Path) -> None:
    await harness.sandbox.control.create_creator("shorty", private=True, max_video_post_duration_sec=2)
    await harness.connect_account("acc-s", "shorty")
    video = await harness.put_file("videos/3s.mp4", video_3s)
    async with running_service(harness.settings()):
        await harness.request_post(
            post_request("too-public", video.uri, account_id="acc-s", privacy_level="PUBLIC_TO_EVERYONE")
        )
        await harness.request_post(post_request("too-long", video.uri, account_id="acc-s"))
        public = await harness.wait_state("too-public", "rejected")
        long = await harness.wait_state("too-long", "rejected")
    assert public.error is not None and public.error.code == "privacy_level_option_mismatch"
    assert long.error is not None and long.error.code == "duration_too_long"
    assert await harness.sandbox.control.posts() == []  # no init, no bytes
