"""publish_service as a real process, killed mid-upload: the post still ends published exactly once.

The sandbox runs in this test process so that it outlives the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.publish.harness import MIB, Harness
from tests.publish.payloads import post_request
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def _start(harness: Harness, log_path: Path, **overrides: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **harness.env(**{"PUBLISH_WORKERS": "2", "SHUTDOWN_DEADLINE_S": "10", **overrides})}
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "publish_service"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )


async def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    return await wait_for(lambda: process.poll() is not None and (process.returncode, True), timeout, 0.1)


async def _upload_started(harness: Harness, post_id: str, at_least: int) -> None:
    await harness.wait_event(
        post_id,
        lambda e: e.progress is not None and at_least <= e.progress.bytes_sent < e.progress.bytes_total,
        timeout=90,
        what=f"upload progress past {at_least} bytes",
    )


async def test_sigkill_mid_upload_resumes_and_publishes_once(
    harness: Harness, video_3s: Path, tmp_path: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_padded_video("videos/big.mp4", video_3s, 200 * 1000 * 1000)
    # Slow each chunk down a little so that the kill lands in the middle of the upload.
    await harness.sandbox.control.inject_fault("/video/", count=None, latency_ms=250)
    first = _start(harness, tmp_path / "service.log")
    try:
        post_id = await harness.request_post(post_request("big-1", video.uri))
        await _upload_started(harness, post_id, 30 * MIB)
        first.send_signal(signal.SIGKILL)
        await _wait_exit(first, 10)
    finally:
        if first.poll() is None:
            first.kill()
    before = await harness.sandbox.control.posts()
    assert len(before) == 1
    received_at_kill = before[0]["uploaded_bytes"]
    assert 0 < received_at_kill < video.size
    second = _start(harness, tmp_path / "service.log")
    try:
        done = await harness.wait_state(post_id, "published", timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        await _wait_exit(second, 30)
    posts = await harness.sandbox.control.posts()
    assert len(posts) == 1, "exactly one post at TikTok"
    assert posts[0]["publish_id"] == done.publish_id == before[0]["publish_id"], "resumed, not re-initialised"
    assert posts[0]["sha256"] == video.sha256
    assert posts[0]["size"] == video.size
    assert harness.log.states(post_id).count("published") == 1
    _assert_no_secrets_logged(harness, tmp_path / "service.log")


def _assert_no_secrets_logged(harness: Harness, log_path: Path) -> None:
    text = log_path.read_text()
    assert "upload_complete" in text  # the log is really there
    assert "upload_resumed" in text
    assert harness.tokens["acc-1"] not in text
    assert harness.tiktok_app.client_secret not in text
    assert re.search(r"upload_token=(?!\[redacted\])", text) is None


async def test_sigterm_checkpoints_the_upload_and_exits_in_time(
    harness: Harness, video_3s: Path, tmp_path: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_padded_video("videos/term.mp4", video_3s, 120 * 1000 * 1000)
    await harness.sandbox.control.inject_fault("/video/", count=None, latency_ms=250)
    first = _start(harness, tmp_path / "service.log")
    try:
        post_id = await harness.request_post(post_request("term-1", video.uri))
        await _upload_started(harness, post_id, 20 * MIB)
        first.send_signal(signal.SIGTERM)
        assert await _wait_exit(first, 25) == (0, True)
    finally:
        if first.poll() is None:
            first.kill()
    conn = await asyncpg.connect(harness.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT state, lease_owner, bytes_acked FROM publish.posts WHERE post_id = $1", post_id
        )
    finally:
        await conn.close()
    assert row["state"] == "uploading" and row["lease_owner"] is None  # checkpointed and handed back
    sandbox_post = (await harness.sandbox.control.posts())[0]
    assert row["bytes_acked"] == sandbox_post["uploaded_bytes"]
    second = _start(harness, tmp_path / "service.log")
    try:
        await harness.wait_state(post_id, "published", timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        await _wait_exit(second, 30)
    posts = await harness.sandbox.control.posts()
    assert len(posts) == 1 and posts[0]["sha256"] == video.sha256
    await asyncio.sleep(0)


def _logged(log_path: Path, event: str) -> int:
    count = 0
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            count += json.loads(line).get("event") == event
        except (ValueError, AttributeError):
            continue
    return count


async def test_sigterm_during_a_chunk_retry_wait_checkpoints_before_the_deadline(
    harness: Harness, video_3s: Path, tmp_path: Path
) -> None:
    """The wait before a chunk is sent again grows to 30 s, past the shutdown deadline: stopping must end
    it, so the worker hands the post back at its checkpoint instead of being cancelled at the deadline."""
    deadline_s = 6.0
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_padded_video("videos/retry.mp4", video_3s, 120 * 1000 * 1000)
    await harness.sandbox.control.inject_fault("/video/", count=None, latency_ms=500)
    log_path = tmp_path / "service.log"
    # One worker and a long lease: nobody else picks the post up while its worker waits.
    first = _start(
        harness, log_path, PUBLISH_WORKERS="1", PUBLISH_LEASE_S="60", SHUTDOWN_DEADLINE_S=str(deadline_s)
    )
    try:
        post_id = await harness.request_post(post_request("retry-1", video.uri))
        await _upload_started(harness, post_id, 20 * MIB)
        await harness.sandbox.control.clear_faults()
        await harness.sandbox.control.inject_fault("/video/", count=None, status=503)
        # After the 6th refused PUT the worker waits TRANSIENT.delay(6) / 4 = 8 s ± 20% before the 7th.
        await wait_for(
            lambda: _logged(log_path, "chunk_retry") >= 6, 60, 0.05, description="six chunk retries"
        )
        sent = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert await _wait_exit(first, 30) == (0, True)
        took = time.monotonic() - sent
    finally:
        if first.poll() is None:
            first.kill()
    assert took < deadline_s, f"the service took {took:.1f}s to stop; the deadline is {deadline_s}s"
    assert _logged(log_path, "upload_checkpointed") == 1
    assert _logged(log_path, "loop_cancelled_at_deadline") == 0
    conn = await asyncpg.connect(harness.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT state, lease_owner, bytes_acked FROM publish.posts WHERE post_id = $1", post_id
        )
    finally:
        await conn.close()
    sandbox_post = (await harness.sandbox.control.posts())[0]
    assert row["state"] == "uploading" and row["lease_owner"] is None  # checkpointed and handed back
    assert 20 * MIB <= row["bytes_acked"] == sandbox_post["uploaded_bytes"] < video.size
    await harness.sandbox.control.clear_faults()
    second = _start(harness, log_path)
    try:
        await harness.wait_state(post_id, "published", timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        await _wait_exit(second, 30)
    posts = await harness.sandbox.control.posts()
    assert len(posts) == 1 and posts[0]["sha256"] == video.sha256
