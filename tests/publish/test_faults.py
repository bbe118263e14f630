"""Faults injected at the sandbox: every post still ends published, and none is published twice."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.publish.harness import MIB, Harness, running_service
from tests.publish.payloads import post_request
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

UPLOAD = "/video/"
VIDEO_INIT = "/v2/post/publish/video/init/"
CREATOR_INFO = "/v2/post/publish/creator_info/query/"
STATUS = "/v2/post/publish/status/fetch/"


async def _publish_one(
    harness: Harness, video_3s: Path, post_id: str, size: int = 30 * MIB
) -> tuple[str, str]:
    video = await harness.put_padded_video(f"videos/{post_id}.mp4", video_3s, size)
    await harness.request_post(post_request(post_id, video.uri))
    return post_id, video.sha256


async def _assert_published_once(harness: Harness, expected: dict[str, str]) -> None:
    posts = await harness.sandbox.control.posts()
    complete = [p for p in posts if p["status"] == "PUBLISH_COMPLETE"]
    assert len(complete) == len(expected), [(p["publish_id"], p["status"]) for p in posts]
    by_id = {p["publish_id"]: p for p in complete}
    for post_id, sha in expected.items():
        last = harness.log.last(post_id)
        assert last is not None and last.state.value == "published", harness.log.states(post_id)
        assert harness.log.states(post_id).count("published") == 1
        assert by_id[last.publish_id or ""]["sha256"] == sha


async def test_chunk_5xx_and_connection_resets_are_retried(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.inject_fault(UPLOAD, count=2, status=503)
    await harness.sandbox.control.inject_fault(UPLOAD, count=2, reset_after_bytes=3 * MIB)
    await harness.sandbox.control.inject_fault(UPLOAD, count=1, status=500)
    async with running_service(harness.settings()):
        post_id, sha = await _publish_one(harness, video_3s, "faulty-chunks")
        await harness.wait_state(post_id, "published", timeout=120)
    await _assert_published_once(harness, {post_id: sha})
    assert await harness.sandbox.control.request("GET", "/faults") == []


async def _assert_faults_fired(harness: Harness, injected: dict[str, int]) -> None:
    """Each injected fault answered a call of the service (none is left waiting at the sandbox), and
    each faulted endpoint was called again afterwards and served: the recovery really was tested."""
    assert await harness.sandbox.control.request("GET", "/faults") == [], "a fault never fired"
    calls = (await harness.sandbox.control.call_counts())["calls"]
    for endpoint, n in injected.items():
        rows = [c for c in calls if c["endpoint"] == endpoint]
        # A call the sandbox answered with a fault never reached TikTok's handler (no slot taken).
        faulted = sum(c["calls"] - c["accepted"] - c["rate_limited"] for c in rows)
        assert faulted >= n, (endpoint, rows)
        assert sum(c["accepted"] for c in rows) >= 1, f"{endpoint} was not called again after its fault"


async def test_429_and_5xx_on_api_calls_back_off_and_recover(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.inject_fault(CREATOR_INFO, count=1, status=500, error_code="internal_error")
    await harness.sandbox.control.inject_fault(
        VIDEO_INIT, count=1, status=429, error_code="rate_limit_exceeded"
    )
    await harness.sandbox.control.inject_fault(STATUS, count=1, status=429, error_code="rate_limit_exceeded")
    async with running_service(harness.settings()):
        post_id, sha = await _publish_one(harness, video_3s, "faulty-api", size=6 * MIB)
        await harness.wait_state(post_id, "published", timeout=150)
    await _assert_published_once(harness, {post_id: sha})
    await _assert_faults_fired(harness, {CREATOR_INFO: 1, VIDEO_INIT: 1, STATUS: 1})


async def test_expired_upload_url_means_a_new_init_and_one_post(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.inject_fault(UPLOAD, count=None, latency_ms=300)
    async with running_service(harness.settings()):
        post_id, sha = await _publish_one(harness, video_3s, "expiring", size=100 * MIB)
        await harness.wait_event(
            post_id,
            lambda e: e.progress is not None and 0 < e.progress.bytes_sent < e.progress.bytes_total,
            what="upload under way",
        )
        await harness.sandbox.control.advance_time(3700)  # the upload URL (1 hour) is now dead
        await harness.sandbox.control.clear_faults()
        await harness.wait_state(post_id, "published", timeout=120)
    states = harness.log.states(post_id)
    assert states.count("uploading") >= 2, states  # a second upload after the new init
    posts = await harness.sandbox.control.posts()
    assert sorted(p["status"] for p in posts) == ["FAILED", "PUBLISH_COMPLETE"]
    await _assert_published_once(harness, {post_id: sha})


async def test_expired_token_is_refreshed_through_auth_service(harness: Harness, video_3s: Path) -> None:
    token = await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.expire_token(token)
    async with running_service(harness.settings()):
        post_id, sha = await _publish_one(harness, video_3s, "stale-token", size=6 * MIB)
        request = await wait_for(lambda: harness.log.refresh, 60, description="a refresh request")
        assert request[0].account_id == "acc-1" and request[0].seen_token_version == 1
        await harness.refresh_on_request("acc-1", "alice")  # auth_service's part
        await harness.wait_state(post_id, "published", timeout=90)
    assert len(harness.log.refresh) == 1, "one refresh request per token version"
    await _assert_published_once(harness, {post_id: sha})


@contextlib.asynccontextmanager
async def answer_losing_proxy(target: str, lose_path: str) -> AsyncIterator[str]:
    """A pass-through to the sandbox that, once, lets TikTok act on ``lose_path`` and then cuts the
    connection instead of answering: the "applied, but the answer was lost" case."""
    lost: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method, f"{target}{request.rel_url}", data=await request.read(), headers=headers
            ) as upstream,
        ):
            body = await upstream.read()
            status = upstream.status
        if request.path == lose_path and not lost:
            lost.append(request.path)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=499)
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _lost_pull_init(harness: Harness, video_3s: Path, post_id: str) -> None:
    video = await harness.put_file(f"videos/{post_id}.mp4", video_3s)
    await harness.request_post(post_request(post_id, video.uri, transfer="pull_from_url"))


async def test_pull_init_with_a_lost_answer_is_adopted_from_the_webhook(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    async with answer_losing_proxy(harness.sandbox.base_url, VIDEO_INIT) as proxy:
        settings = harness.settings(TIKTOK_API_BASE=proxy, PUBLISH_INIT_DOUBT_GRACE_S="120")
        async with running_service(settings) as base:
            await harness.sandbox.control.update_app(
                harness.tiktok_app.client_key, webhook_url=f"{base}/v1/webhooks/tiktok"
            )
            await _lost_pull_init(harness, video_3s, "pull-doubt")
            done = await harness.wait_state("pull-doubt", "published", timeout=60)
    posts = await harness.sandbox.control.posts()
    assert len(posts) == 1, "the init was not repeated"
    assert posts[0]["publish_id"] == done.publish_id


async def test_pull_init_with_a_lost_answer_is_never_repeated(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    async with answer_losing_proxy(harness.sandbox.base_url, VIDEO_INIT) as proxy:
        settings = harness.settings(TIKTOK_API_BASE=proxy, PUBLISH_INIT_DOUBT_GRACE_S="4")
        async with running_service(settings):  # no webhook URL: nothing names the lost publish_id
            await _lost_pull_init(harness, video_3s, "pull-lost")
            failed = await harness.wait_state("pull-lost", "failed", timeout=60)
    assert failed.error is not None and failed.error.code == "init_outcome_unknown"
    posts = await harness.sandbox.control.posts()
    assert len(posts) == 1, "TikTok got exactly one init"
    assert posts[0]["status"] == "PUBLISH_COMPLETE"  # it was published, and we did not post it twice


async def test_a_daily_cap_is_retried_later_and_a_permanent_error_fails_with_tiktoks_details(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.inject_fault(
        VIDEO_INIT, count=1, status=403, error_code="spam_risk_too_many_posts", message="daily cap"
    )
    async with running_service(harness.settings(PUBLISH_CAP_RETRY_S="2")):
        capped, sha = await _publish_one(harness, video_3s, "capped", size=6 * MIB)
        await harness.wait_state(capped, "published", timeout=60)
        await harness.sandbox.control.inject_fault(
            VIDEO_INIT, count=1, status=403, error_code="spam_risk_user_banned_from_posting", message="banned"
        )
        banned, _ = await _publish_one(harness, video_3s, "banned", size=6 * MIB)
        failed = await harness.wait_state(banned, "failed", timeout=60)
    assert failed.error is not None
    assert failed.error.code == "spam_risk_user_banned_from_posting"
    assert failed.error.message == "banned" and failed.error.tiktok_log_id
    assert not failed.error.retryable
    await _assert_published_once(harness, {capped: sha})


async def test_a_gateway_404_fails_at_once_as_a_configuration_error_naming_the_url(
    harness: Harness, video_3s: Path
) -> None:
    """TikTok's gateway answers a path it does not route with a text 404: retrying cannot help."""
    await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.inject_fault(
        VIDEO_INIT, count=None, status=404, shape="text", body="Unsupported path(Janus)"
    )
    async with running_service(harness.settings()):
        post_id, _ = await _publish_one(harness, video_3s, "misrouted", size=6 * MIB)
        failed = await harness.wait_state(post_id, "failed", timeout=60)
    assert failed.error is not None and failed.error.code == "tiktok_config_error"
    assert not failed.error.retryable
    assert VIDEO_INIT in failed.error.message and "Unsupported path(Janus)" in failed.error.message
    calls = await harness.sandbox.control.call_counts()
    assert sum(c["calls"] for c in calls["calls"] if c["endpoint"] == VIDEO_INIT) == 1  # never retried
    await harness.sandbox.control.clear_faults()


async def test_an_empty_403_keeps_tiktoks_log_id_and_invents_no_code(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    await harness.sandbox.control.inject_fault(VIDEO_INIT, count=1, status=403, shape="empty")
    async with running_service(harness.settings()):
        post_id, _ = await _publish_one(harness, video_3s, "empty-403", size=6 * MIB)
        failed = await harness.wait_state(post_id, "failed", timeout=60)
    assert failed.error is not None
    assert failed.error.message == "empty answer, HTTP 403"
    assert failed.error.code == "tiktok_error"  # our category: TikTok gave no code
    assert failed.error.tiktok_log_id and len(failed.error.tiktok_log_id) == 34  # from x-tt-logid
