"""Leases are per worker task: a worker that waits longer than its lease keeps the post to itself.

Every worker task of a process used to lease posts as the process's ``instance_id``. A worker whose
lease ran out during a chunk-retry wait then saw another worker of the same process claim the post,
and both passed the lease checks: two uploads of one post at once (TikTok answers the second with
416, and the two workers fight over the offset).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.publish.harness import MIB, Harness
from tests.publish.payloads import post_request
from tests.publish.test_crash import _logged, _start, _upload_started, _wait_exit
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_a_chunk_retry_wait_longer_than_the_lease_keeps_the_post_with_its_worker(
    harness: Harness, video_3s: Path, tmp_path: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_padded_video("videos/lease.mp4", video_3s, 120 * 1000 * 1000)
    await harness.sandbox.control.inject_fault("/video/", count=None, latency_ms=300)
    log_path = tmp_path / "service.log"
    # Two workers in one process and a 2 s lease: the 4th and 5th retry waits (2 s and 4 s) outlast it.
    service = _start(harness, log_path, PUBLISH_WORKERS="2", PUBLISH_LEASE_S="2", TIKTOK_TIMEOUT_S="1")
    try:
        post_id = await harness.request_post(post_request("lease-1", video.uri))
        await _upload_started(harness, post_id, 20 * MIB)
        await harness.sandbox.control.clear_faults()
        await harness.sandbox.control.inject_fault("/video/", count=5, status=503)
        await wait_for(lambda: _logged(log_path, "chunk_retry") >= 5, 60, 0.05, description="five retries")
        await harness.wait_state(post_id, "published", timeout=120)
    finally:
        service.send_signal(signal.SIGTERM)
        await _wait_exit(service, 30)
    # One worker uploaded the post from start to end: no PUT ever came out of order.
    assert _logged(log_path, "upload_resync") == 0
    assert _logged(log_path, "post_lease_lost") == 0
    assert _logged(log_path, "upload_resumed") == 0, "a second worker picked the upload up"
    posts = await harness.sandbox.control.posts()
    assert len(posts) == 1 and posts[0]["sha256"] == video.sha256
