"""#12.15: an account connected drafts-only (video.upload, no video.publish) cannot post directly.

The direct post is rejected with ``scope_missing`` before any TikTok call; a draft for the same
account goes through.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.publish.harness import Harness, running_service
from tests.publish.payloads import post_request

pytestmark = pytest.mark.stack


async def test_direct_post_without_video_publish_is_rejected_before_calling_tiktok(
    harness: Harness, video_3s: Path
) -> None:
    token = await harness.connect_account("acc-1", "alice", scopes=["user.info.basic", "video.upload"])
    video = await harness.put_file("videos/scopes.mp4", video_3s)
    async with running_service(harness.settings()) as _base:
        direct = await harness.request_post(post_request("direct-1", video.uri))
        rejected = await harness.wait_state(direct, "rejected")
        assert rejected.error is not None and rejected.error.code == "scope_missing"
        assert "video.publish" in rejected.error.message
        calls = await harness.sandbox.control.call_counts()
        assert [c for c in calls["calls"] if c["token"] == token] == []  # TikTok never asked
        draft = await harness.request_post(
            post_request("draft-1", video.uri, mode="draft", privacy_level=None)
        )
        await harness.wait_state(draft, "inbox_delivered")
    assert len(await harness.sandbox.control.posts()) == 1


@pytest.mark.parametrize(
    ("mode", "granted", "missing"),
    [
        ("direct", ("video.publish",), None),
        ("direct", ("user.info.basic", "video.upload"), "video.publish"),
        ("draft", ("video.upload",), None),
        ("draft", ("video.publish",), "video.upload"),
        ("direct", (), None),  # not known yet (no event carried scopes): TikTok's refusal still applies
    ],
)
def test_missing_scope_table(mode: str, granted: tuple[str, ...], missing: str | None) -> None:
    from common.events import PostMode
    from publish_service.domain.validation import missing_scope

    assert missing_scope(PostMode(mode), granted) == missing
