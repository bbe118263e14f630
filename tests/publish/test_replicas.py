"""Two replicas share 50 posts: none handled twice, TikTok's per-token limits never exceeded.

The sandbox and the service both use a 10-second rate window instead of TikTok's 60 seconds
(TIKTOK_RATE_WINDOW_S / the sandbox's rate_window_s), so the limits bind within a short test: ten
posts per account need at least two init windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import aiohttp
import pytest

from tests.publish.harness import Harness, running_service
from tests.publish.payloads import post_request
from tiktok_sandbox.config import DEFAULT_RATE_LIMITS, SandboxConfig

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]

WINDOW_S = 10.0
ACCOUNTS = 5
POSTS = 50


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(
        data_dir=str(tmp_path / "sandbox-data"),
        processing_min_s=0.5,
        pull_allow_http=True,
        allow_ip_prefixes=True,
        rate_window_s=WINDOW_S,
        rate_window_kind="sliding",
    )


async def _published_by(base: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as r:
        text = await r.text()
    match = re.search(r'^tiktok_publish_posts_finished_total\{state="published"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_two_replicas_share_fifty_posts(harness: Harness, video_3s: Path) -> None:
    for n in range(ACCOUNTS):
        if n:
            await harness.sandbox.control.create_creator(f"creator{n}")
        await harness.connect_account(f"acc-{n}", "alice" if n == 0 else f"creator{n}")
    video = await harness.put_file("videos/shared.mp4", video_3s)
    settings = [
        harness.settings(TIKTOK_RATE_WINDOW_S=str(WINDOW_S), PUBLISH_WORKERS="4", PUBLISH_LEASE_S="10")
        for _ in range(2)
    ]
    async with contextlib.AsyncExitStack() as stack:
        bases = [await stack.enter_async_context(running_service(s)) for s in settings]
        post_ids = [f"p-{i:02d}" for i in range(POSTS)]
        await asyncio.gather(
            *(
                harness.request_post(post_request(pid, video.uri, account_id=f"acc-{i % ACCOUNTS}"))
                for i, pid in enumerate(post_ids)
            )
        )
        for pid in post_ids:
            await harness.wait_state(pid, "published", timeout=240)
        per_replica = [await _published_by(b) for b in bases]
    assert sum(per_replica) == POSTS and all(n > 0 for n in per_replica), per_replica
    for pid in post_ids:
        states = harness.log.states(pid)
        assert states == ["received", "validating", "uploading", "processing", "published"], (pid, states)
    posts = await harness.sandbox.control.posts()
    assert len(posts) == POSTS and all(p["status"] == "PUBLISH_COMPLETE" for p in posts)
    counts = await harness.sandbox.control.call_counts()
    assert counts["rate_limited_total"] == 0, counts
    for row in counts["calls"]:
        limit = DEFAULT_RATE_LIMITS.get(row["endpoint"])
        if limit is not None:
            assert row["max_in_window"] <= limit, row
    inits = [r for r in counts["calls"] if r["endpoint"] == "/v2/post/publish/video/init/"]
    assert max(r["max_in_window"] for r in inits) == 6, "the init limit was reached, so it was really tested"
