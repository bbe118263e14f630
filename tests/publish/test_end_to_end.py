"""End to end: post events in, bytes at the sandbox, status events out (real Kafka, Postgres, S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.publish.harness import Harness, running_service
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


async def test_file_upload_direct_post_is_published_byte_exact(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/a.mp4", video_3s)
    async with running_service(harness.settings()):
        post_id = await harness.request_post(
            post_id="post-1", account_id="acc-1", kind="video", mode="direct",
            video={"uri": video.uri}, caption="hello #fyp", privacy_level="PUBLIC_TO_EVERYONE",
            metadata={"cms_id": 42},
        )  # fmt: skip
        published = await harness.wait_state(post_id, "published")
        final = await harness.wait_event(post_id, lambda e: e.tiktok_post_ids, what="public post id")
    states = harness.log.states(post_id)
    assert states[:5] == ["received", "validating", "uploading", "processing", "published"], states
    seqs = [e.seq for e in harness.log.events[post_id]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert published.publish_id and final.tiktok_post_ids
    assert final.metadata == {"cms_id": 42}
    sandbox_post = await harness.sandbox.control.post(published.publish_id)
    assert sandbox_post["sha256"] == video.sha256
    assert sandbox_post["size"] == video.size
    assert sandbox_post["post_info"]["title"] == "hello #fyp"
    assert len(await harness.sandbox.control.posts()) == 1
