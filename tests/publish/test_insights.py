"""Post metrics and account stats (issue 17), against the real service, Kafka, Postgres and the sandbox.

The sandbox's counts grow with its clock; the tests freeze it, so what TikTok answers at a fetch is
known exactly, and move it on to play the hours and days between the slots of the schedule. The
service's schedule runs on the real clock and is shortened by ``INSIGHTS_SCHEDULE``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from common.events import InsightsUnavailable
from tests.publish.harness import Harness, running_service
from tests.publish.insights_support import (
    connect_with_scopes,
    insert_published,
    open_slots,
    query_calls,
    reading_insights,
    seed_videos,
    set_video,
    video,
)
from tests.publish.payloads import post_request
from tests.waiting import wait_for
from tiktok_sandbox.config import SandboxConfig

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
COUNTS = ("view_count", "like_count", "comment_count", "share_count")
NO_INSIGHTS = ["user.info.basic", "video.upload", "video.publish"]


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(
        data_dir=str(tmp_path / "sandbox-data"),
        pull_allow_http=True,
        allow_ip_prefixes=True,
        processing_min_s=0.5,
        moderation_delay_s=1.0,
        access_token_ttl_s=10**8,  # the tests move the sandbox clock by days
        refresh_token_ttl_s=10**9,
    )


def _counts(source: Any) -> tuple[int, ...]:
    if isinstance(source, dict):
        return tuple(source[k] for k in COUNTS)
    return tuple(getattr(source, k) for k in COUNTS)


async def test_three_hundred_posts_due_at_once_go_in_batches_of_twenty_without_a_429(
    harness: Harness, database_url: str
) -> None:
    await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.freeze_time()
    videos = await seed_videos(harness, "alice", 300)
    await harness.sandbox.control.advance_time(6 * 3600)  # the videos have counts now
    settings = harness.settings(INSIGHTS_SCHEDULE="1s,30d", INSIGHTS_POLL_S="0.5")
    async with reading_insights(harness) as log, running_service(settings) as base:
        post_ids = await insert_published(database_url, "acc-1", [v["video_id"] for v in videos])
        await wait_for(
            lambda: all(log.metrics.get(p) for p in post_ids), 90, 0.2, description="one event per post"
        )
        calls = await query_calls(harness)
        expected = {v["video_id"]: _counts(await video(harness, v["video_id"])) for v in videos}
        total_views = sum(c[0] for c in expected.values())
        gauge = await wait_for(
            lambda: _gauge(base, "tiktok_account_views", "acc-1", total_views), 30, 0.2, description="gauge"
        )
    assert sum(c["accepted"] for c in calls) == 15, "300 ids in 15 queries of 20"
    assert sum(c["rate_limited"] for c in calls) == 0
    for post_id, v in zip(post_ids, videos, strict=True):
        (event,) = log.metrics[post_id]
        data = event.data
        assert (data.slot, data.tiktok_post_id, data.insights_unavailable) == (0, v["video_id"], None)
        assert _counts(data) == expected[v["video_id"]], "the sandbox's counts"
        assert data.view_count and data.view_count > 0
        assert data.metadata == {"campaign": f"c{post_ids.index(post_id)}"}
    assert await open_slots(database_url) == 300, "the 30-day slot of each post is still ahead"
    assert gauge.count("tiktok_account_views{") == 1, "one series per account, not per post"


async def _gauge(base: str, name: str, account_id: str, value: int) -> str | None:
    async with aiohttp.ClientSession(trust_env=False) as http, http.get(f"{base}/metrics") as r:
        text = await r.text()
    found = re.search(rf'^{name}{{account_id="{account_id}"}} (\S+)$', text, re.M)
    return text if found and float(found.group(1)) == value else None


async def test_missing_scope_deleted_and_private_each_end_in_one_event(
    harness: Harness, database_url: str
) -> None:
    await harness.sandbox.control.create_creator("bob", follower_count=7)
    await harness.connect_account("acc-1", "alice")
    await connect_with_scopes(harness, "acc-2", "bob", NO_INSIGHTS)
    await harness.sandbox.control.freeze_time()
    gone, private, fine = await seed_videos(harness, "alice", 3, view_count=100, like_count=10)
    (bobs,) = await seed_videos(harness, "bob", 1)
    await set_video(harness, gone["video_id"], visibility="deleted")
    await set_video(harness, private["video_id"], visibility="private")
    settings = harness.settings(
        INSIGHTS_SCHEDULE="1s,2s,3s", INSIGHTS_POLL_S="0.5", INSIGHTS_STATS_INTERVAL_S="2"
    )
    async with reading_insights(harness) as log, running_service(settings) as base:
        alice_posts = await insert_published(
            database_url, "acc-1", [gone["video_id"], private["video_id"], fine["video_id"]]
        )
        (bob_post,) = await insert_published(database_url, "acc-2", [bobs["video_id"]])
        # Every slot of the three posts is due at once (published an hour ago): nothing may be left.
        await wait_for(
            lambda: _all_done(database_url), 60, 0.2, description="every slot done, none left to retry"
        )
        # Stats every 2 s here (a day by default): alice twice, bob's missing scope said once only.
        await wait_for(lambda: len(log.stats.get("acc-1", [])) >= 2 and log.stats.get("acc-2"), 60, 0.2)
        bob_handled = 'tiktok_insights_fetches_total{kind="account",outcome="scope_missing"}'
        await wait_for(
            lambda: _at_least(_counter(base, bob_handled), 3),
            30,
            0.2,
            description="bob's stats looked at three times (the second one's event would be out by now)",
        )
        calls = await query_calls(harness)
    by_post = {p: [e.data for e in log.metrics.get(p, [])] for p in [*alice_posts, bob_post]}
    gone_post, private_post, fine_post = alice_posts
    for post_id, reason in [
        (gone_post, InsightsUnavailable.video_unavailable),
        (private_post, InsightsUnavailable.video_unavailable),
        (bob_post, InsightsUnavailable.scope_missing),
    ]:
        events = by_post[post_id]
        assert [(e.slot, e.insights_unavailable) for e in events] == [(0, reason)], post_id
        assert _counts(events[0]) == (None, None, None, None)
    assert sorted(e.slot for e in by_post[fine_post]) == [0, 1, 2], "the public video: every slot"
    assert all(_counts(e) == (100, 10, 0, 0) for e in by_post[fine_post])
    assert sum(c["calls"] for c in calls) == 2, "one query per account, no retries"
    (bob_stats,) = [e.data for e in log.stats["acc-2"]]
    assert bob_stats.insights_unavailable is InsightsUnavailable.scope_missing
    assert bob_stats.follower_count is None
    alice_event, again = (e.data for e in log.stats["acc-1"][:2])
    assert again.fetched_at > alice_event.fetched_at and again.follower_count == alice_event.follower_count
    assert alice_event.insights_unavailable is None
    assert alice_event.video_count == 1, "the one public video"
    assert alice_event.likes_count == 10 and alice_event.follower_count == 1  # 1% of 100 views


async def test_a_creator_without_the_insights_scopes_still_posts_and_hears_scope_missing_once(
    harness: Harness, video_3s: Path
) -> None:
    await connect_with_scopes(harness, "acc-1", "alice", NO_INSIGHTS)
    media = await harness.put_file("videos/no-insights.mp4", video_3s)
    settings = harness.settings(INSIGHTS_SCHEDULE="2s,4s,6s", INSIGHTS_POLL_S="0.3")
    async with reading_insights(harness) as log, running_service(settings):
        post_id = await harness.request_post(
            post_request("n-1", media.uri, privacy_level="PUBLIC_TO_EVERYONE")
        )
        published = await harness.wait_event(
            post_id, lambda e: e.state.value == "published" and e.tiktok_post_ids, 90, "public post id"
        )
        await wait_for(lambda: log.metrics.get(post_id) and log.stats.get("acc-1"), 30, 0.2)
        await wait_for(lambda: _all_done(harness.database_url), 30, 0.2, description="no slot left")
        calls = await query_calls(harness)
    (metrics,) = [e.data for e in log.metrics[post_id]]
    assert (metrics.slot, metrics.insights_unavailable) == (0, InsightsUnavailable.scope_missing)
    assert metrics.tiktok_post_id == published.tiktok_post_ids[0]
    (stats,) = [e.data for e in log.stats["acc-1"]]
    assert stats.insights_unavailable is InsightsUnavailable.scope_missing
    assert sum(c["calls"] for c in calls) == 1, "asked once, refused once, not asked again"


async def _at_least(value: Any, minimum: float) -> bool:
    return bool(await value >= minimum)


async def _counter(base: str, line_start: str) -> float:
    async with aiohttp.ClientSession(trust_env=False) as http, http.get(f"{base}/metrics") as r:
        text = await r.text()
    found = re.search(rf"^{re.escape(line_start)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def _all_done(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        left = await conn.fetchval("SELECT count(*) FROM publish.metric_slots WHERE done_at IS NULL")
        planned = await conn.fetchval("SELECT count(*) FROM publish.metric_slots")
        return bool(planned) and left == 0
    finally:
        await conn.close()


def _start(harness: Harness, log_path: Path, **overrides: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **harness.env(
            **{"PUBLISH_WORKERS": "2", "SHUTDOWN_DEADLINE_S": "10", "PUBLISH_LEASE_S": "6", **overrides}
        ),
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "publish_service"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )


async def test_each_slot_once_with_the_sandbox_counts_across_two_replicas_and_a_sigkill(
    harness: Harness, video_3s: Path, tmp_path: Path
) -> None:
    """Slots 5 s apart stand for 1 h, 6 h, 24 h, 3 d and 7 d; the test moves the sandbox clock to each
    point once the previous slot's event is out, and kills one replica after the second slot."""
    await harness.connect_account("acc-1", "alice")
    media = await harness.put_file("videos/insights.mp4", video_3s)
    stands_for = [3600, 6 * 3600, 24 * 3600, 3 * 86400, 7 * 86400]
    schedule = "6s,11s,16s,21s,26s"
    replicas = [
        _start(harness, tmp_path / f"replica-{n}.log", INSIGHTS_SCHEDULE=schedule, INSIGHTS_POLL_S="0.3")
        for n in range(2)
    ]
    try:
        async with reading_insights(harness) as log:
            post_id = await harness.request_post(
                post_request("m-1", media.uri, privacy_level="PUBLIC_TO_EVERYONE", metadata={"ref": "x1"})
            )
            published = await harness.wait_event(
                post_id, lambda e: e.state.value == "published" and e.tiktok_post_ids, 90, "public post id"
            )
            (video_id,) = published.tiktok_post_ids
            state = await harness.sandbox.control.freeze_time()
            public_at = (await video(harness, video_id))["published_at"]
            checkpoints: list[tuple[int, ...]] = []
            for n, after in enumerate(stands_for):
                now = (await harness.sandbox.control.request("GET", "/time"))["now"]
                await harness.sandbox.control.advance_time(public_at + after - now)
                checkpoints.append(_counts(await video(harness, video_id)))
                await wait_for(lambda n=n: n in log.slots(post_id), 60, 0.1, description=f"slot {n}")
                if n == 1:
                    replicas[0].send_signal(signal.SIGKILL)
            assert state["frozen"]
            # Give a duplicate a chance to show: every slot's lease has long expired by now.
            await wait_for(lambda: _all_slots_done(harness), 60, 0.2, description="slots done")
    finally:
        for process in replicas:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in replicas:
            await asyncio.to_thread(process.wait, 30)
    slots = log.slots(post_id)
    assert sorted(slots) == list(range(len(stands_for)))
    assert all(len(ids) == 1 for ids in slots.values()), f"one event per slot: {slots}"
    firsts = log.first_per_slot(post_id)
    series = [_counts(firsts[n]) for n in range(len(stands_for))]
    assert series[0] == checkpoints[0]
    for n, counts in enumerate(series):
        assert counts in checkpoints[: n + 1], f"slot {n}: {counts} is one of the sandbox's counts"
    assert series == sorted(series), "counts only grow"
    assert series[-1] > series[0]
    assert all(firsts[n].metadata == {"ref": "x1"} for n in firsts)
    assert replicas[0].returncode == -signal.SIGKILL


async def _all_slots_done(harness: Harness) -> bool:
    return await _all_done(harness.database_url)
