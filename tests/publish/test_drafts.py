"""A delivered inbox draft is followed: the webhook first, a slow status poll as the fallback, expiry last."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.publish.harness import Harness, running_service
from tests.publish.payloads import post_request

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

DRAFT_STATES = ["received", "validating", "uploading", "processing", "inbox_delivered"]


async def test_a_posted_draft_is_published_by_the_webhook_and_a_repeat_changes_nothing(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/draft.mp4", video_3s)
    # The poll waits an hour: only the webhook can report the posting within the test.
    async with running_service(harness.settings(PUBLISH_DRAFT_POLL_S="3600")) as base:
        await harness.sandbox.control.update_app(
            harness.tiktok_app.client_key, webhook_url=f"{base}/v1/webhooks/tiktok"
        )
        request = post_request("draft-w", video.uri, mode="draft", privacy_level=None)
        post_id = await harness.request_post(request)
        done = await harness.wait_state(post_id, "inbox_delivered")
        await harness.sandbox.control.user_posts_draft(done.publish_id or "", "PUBLIC_TO_EVERYONE")
        published = await harness.wait_state(post_id, "published", timeout=30)
    assert harness.log.states(post_id) == [*DRAFT_STATES, "published"]
    assert published.publish_id == done.publish_id
    assert published.error is None


async def test_without_webhooks_the_slow_poll_finds_the_posted_draft(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/draft.mp4", video_3s)
    # No webhook URL at the app: only the status poll can see the posting.
    async with running_service(harness.settings(PUBLISH_DRAFT_POLL_S="1", PUBLISH_DRAFT_POLL_MAX_S="2")):
        request = post_request("draft-p", video.uri, mode="draft", privacy_level=None)
        post_id = await harness.request_post(request)
        done = await harness.wait_state(post_id, "inbox_delivered")
        await harness.sandbox.control.user_posts_draft(done.publish_id or "", "PUBLIC_TO_EVERYONE")
        published = await harness.wait_state(post_id, "published", timeout=30)
        final = await harness.wait_event(post_id, lambda e: e.tiktok_post_ids, what="public post id")
    assert harness.log.states(post_id)[: len(DRAFT_STATES) + 1] == [*DRAFT_STATES, "published"]
    assert published.publish_id == done.publish_id
    sandbox_post = await harness.sandbox.control.post(done.publish_id or "")
    assert sandbox_post["status"] == "PUBLISH_COMPLETE"
    assert final.tiktok_post_ids


async def test_a_draft_never_posted_ends_failed_as_draft_expired(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/draft.mp4", video_3s)
    settings = harness.settings(
        PUBLISH_DRAFT_POLL_S="1", PUBLISH_DRAFT_POLL_MAX_S="1", PUBLISH_DRAFT_LIFETIME_S="4"
    )
    async with running_service(settings):
        request = post_request("draft-x", video.uri, mode="draft", privacy_level=None)
        post_id = await harness.request_post(request)
        done = await harness.wait_state(post_id, "inbox_delivered")
        failed = await harness.wait_state(post_id, "failed", timeout=30)
    assert harness.log.states(post_id) == [*DRAFT_STATES, "failed"]
    assert failed.error is not None and failed.error.code == "draft_expired"
    assert "did not post the draft" in failed.error.message
    sandbox_post = await harness.sandbox.control.post(done.publish_id or "")
    assert sandbox_post["status"] == "SEND_TO_USER_INBOX"  # the draft is untouched at TikTok
