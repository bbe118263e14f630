"""End to end: post events in, bytes at the sandbox, status events out (real Kafka, Postgres, S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.publish.harness import Harness, running_service
from tests.publish.payloads import post_request
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


async def test_file_upload_direct_post_is_published_byte_exact(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/a.mp4", video_3s)
    async with running_service(harness.settings()):
        post_id = await harness.request_post(
            post_request(
                "post-1",
                video.uri,
                caption="hello #fyp",
                privacy_level="PUBLIC_TO_EVERYONE",
                metadata={"cms_id": 42},
            )
        )
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


async def test_draft_goes_to_the_inbox_and_is_published_when_the_creator_posts_it(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/draft.mp4", video_3s)
    async with running_service(harness.settings()) as base:
        await harness.sandbox.control.update_app(
            harness.tiktok_app.client_key, webhook_url=f"{base}/v1/webhooks/tiktok"
        )
        post_id = await harness.request_post(
            post_request("draft-1", video.uri, mode="draft", privacy_level=None)
        )
        done = await harness.wait_state(post_id, "inbox_delivered")
        sandbox_post = await harness.sandbox.control.post(done.publish_id or "")
        assert sandbox_post["status"] == "SEND_TO_USER_INBOX"
        assert sandbox_post["sha256"] == video.sha256
        await harness.sandbox.control.user_posts_draft(done.publish_id or "", "SELF_ONLY")
        await harness.wait_state(post_id, "published", timeout=30)
    assert harness.log.states(post_id) == [
        "received",
        "validating",
        "uploading",
        "processing",
        "inbox_delivered",
        "published",
    ]


async def test_photo_post_is_pulled_and_published(harness: Harness, image_jpeg: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    photos = [await harness.put_file(f"photos/{i}.jpg", image_jpeg) for i in range(3)]
    async with running_service(harness.settings()):
        post_id = await harness.request_post(
            post_request(
                "photo-1",
                kind="photo",
                transfer="pull_from_url",
                photos=[{"uri": p.uri} for p in photos],
                cover_index=1,
                title="three frames",
                description="a #photo post",
                privacy_level="PUBLIC_TO_EVERYONE",
            )
        )
        done = await harness.wait_state(post_id, "published")
    assert harness.log.states(post_id)[:4] == ["received", "validating", "processing", "published"]
    sandbox_post = await harness.sandbox.control.post(done.publish_id or "")
    assert sandbox_post["media_type"] == "PHOTO"
    assert sandbox_post["source_info"]["photo_cover_index"] == 1
    assert [f["sha256"] for f in sandbox_post["files"]] == [p.sha256 for p in photos]
    assert sandbox_post["post_info"]["title"] == "three frames"


async def test_pull_from_url_video_is_published_byte_exact(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/pull.mp4", video_3s)
    async with running_service(harness.settings()):
        post_id = await harness.request_post(post_request("pull-1", video.uri, transfer="pull_from_url"))
        done = await harness.wait_state(post_id, "published")
    assert harness.log.states(post_id) == ["received", "validating", "processing", "published"]
    sandbox_post = await harness.sandbox.control.post(done.publish_id or "")
    assert sandbox_post["source"] == "PULL_FROM_URL"
    assert sandbox_post["sha256"] == video.sha256


async def test_scheduled_post_waits_for_publish_at(harness: Harness, video_3s: Path) -> None:
    from datetime import UTC, datetime, timedelta

    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/later.mp4", video_3s)
    publish_at = datetime.now(UTC) + timedelta(seconds=4)
    async with running_service(harness.settings()):
        post_id = await harness.request_post(
            post_request("sched-1", video.uri, publish_at=publish_at.isoformat())
        )
        await harness.wait_state(post_id, "scheduled")
        assert await harness.sandbox.control.posts() == []
        done = await harness.wait_state(post_id, "published")
    assert harness.log.states(post_id)[:3] == ["received", "scheduled", "validating"]
    sandbox_post = await harness.sandbox.control.post(done.publish_id or "")
    assert sandbox_post["created_at"] >= publish_at.timestamp() - 0.5
    assert sandbox_post["sha256"] == video.sha256


async def test_http_submit_lookup_and_webhooks(harness: Harness, video_3s: Path) -> None:
    import json
    import time

    import aiohttp

    from common.tiktok.webhooks import sign
    from tests.publish.harness import API_KEY

    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/http.mp4", video_3s)
    body = post_request("http-1", video.uri, privacy_level="PUBLIC_TO_EVERYONE")
    async with running_service(harness.settings()) as base, aiohttp.ClientSession() as http:
        await harness.sandbox.control.update_app(
            harness.tiktok_app.client_key, webhook_url=f"{base}/v1/webhooks/tiktok"
        )
        async with http.post(f"{base}/v1/posts", json=body) as r:
            assert r.status == 401
        auth = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(f"{base}/v1/posts", json={**body, "privacy_level": "NOPE"}, headers=auth) as r:
            assert r.status == 400
            assert "privacy_level" in (await r.json())["error"]["message"]
        async with http.post(f"{base}/v1/posts", json=body, headers=auth) as r:
            assert r.status == 202
        done = await harness.wait_event("http-1", lambda e: e.tiktok_post_ids, what="public post id")
        async with http.get(f"{base}/v1/posts/http-1", headers=auth) as r:
            view = await r.json()
        assert view["state"] == "published" and view["tiktok_post_ids"] == done.tiktok_post_ids
        assert "upload_url" not in json.dumps(view)
        async with http.get(f"{base}/v1/posts/nope", headers=auth) as r:
            assert r.status == 404
        # The sandbox delivered signed webhooks; a forged one is refused, a repeat is dropped.
        deliveries = await wait_for(harness.sandbox.control.webhooks, 20, description="sandbox webhooks")
        assert all(d["attempts"][-1]["status"] == 200 for d in deliveries if d["attempts"]), deliveries
        hook = json.dumps(
            {
                "client_key": harness.tiktok_app.client_key,
                "event": "post.publish.complete",
                "create_time": 1,
                "user_openid": "x",
                "content": json.dumps({"publish_id": done.publish_id}),
            }
        ).encode()
        async with http.post(
            f"{base}/v1/webhooks/tiktok", data=hook, headers={"TikTok-Signature": "t=1,s=00"}
        ) as r:
            assert r.status == 401
        signed = {"TikTok-Signature": sign(hook, harness.tiktok_app.client_secret, int(time.time()))}
        async with http.post(f"{base}/v1/webhooks/tiktok", data=hook, headers=signed) as r:
            # The post is published already: a late `complete` changes nothing (and wakes nobody).
            assert (await r.json())["outcome"] == "repeat"
        async with http.post(f"{base}/v1/webhooks/tiktok", data=hook, headers=signed) as r:
            assert (await r.json())["outcome"] == "duplicate"
        # TikTok has delivered this event with both spellings of "publicly"; either carries a post id.
        for n, event in enumerate(("post.publish.publicaly_available", "post.publish.publicly_available")):
            new_id = f"730000000000000{n:04d}"
            hook = json.dumps(
                {
                    "client_key": harness.tiktok_app.client_key,
                    "event": event,
                    "create_time": 2 + n,
                    "user_openid": "x",
                    "content": json.dumps({"publish_id": done.publish_id, "post_id": new_id}),
                }
            ).encode()
            signed = {"TikTok-Signature": sign(hook, harness.tiktok_app.client_secret, int(time.time()))}
            async with http.post(f"{base}/v1/webhooks/tiktok", data=hook, headers=signed) as r:
                assert (await r.json())["outcome"] == "post_id", event
            async with http.get(f"{base}/v1/posts/http-1", headers=auth) as r:
                assert new_id in (await r.json())["tiktok_post_ids"], event


async def test_a_scheduled_post_can_be_cancelled_before_it_starts(harness: Harness, video_3s: Path) -> None:
    from datetime import UTC, datetime, timedelta

    import aiohttp

    from tests.publish.harness import API_KEY

    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/cancel.mp4", video_3s)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with running_service(harness.settings()) as base, aiohttp.ClientSession(headers=auth) as http:
        for post_id in ("later-1", "now-1"):
            at = datetime.now(UTC) + timedelta(hours=1 if post_id == "later-1" else 0)
            await harness.request_post(post_request(post_id, video.uri, publish_at=at.isoformat()))
        await harness.wait_state("later-1", "scheduled")
        async with http.post(f"{base}/v1/posts/later-1/cancel") as r:
            assert r.status == 200 and (await r.json())["state"] == "cancelled"
        await harness.wait_state("later-1", "cancelled")
        async with http.post(f"{base}/v1/posts/later-1/cancel") as r:  # again: the same answer
            assert r.status == 200 and (await r.json())["state"] == "cancelled"
        async with http.post(f"{base}/v1/posts/nobody-1/cancel") as r:
            assert r.status == 404
        await harness.wait_state("now-1", "published")
        async with http.post(f"{base}/v1/posts/now-1/cancel") as r:
            assert r.status == 409
    assert len(await harness.sandbox.control.posts()) == 1


async def test_photo_draft_and_pull_video_draft_reach_the_inbox(
    harness: Harness, image_jpeg: Path, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    photo = await harness.put_file("photos/d.jpg", image_jpeg)
    video = await harness.put_file("videos/d.mp4", video_3s)
    async with running_service(harness.settings()):
        await harness.request_post(
            post_request(
                "photo-draft",
                kind="photo",
                mode="draft",
                privacy_level=None,
                transfer="pull_from_url",
                photos=[{"uri": photo.uri}],
                cover_index=0,
                title="draft photo",
            )
        )
        await harness.request_post(
            post_request("pull-draft", video.uri, mode="draft", privacy_level=None, transfer="pull_from_url")
        )
        photo_done = await harness.wait_state("photo-draft", "inbox_delivered")
        video_done = await harness.wait_state("pull-draft", "inbox_delivered")
    photo_post = await harness.sandbox.control.post(photo_done.publish_id or "")
    assert photo_post["post_mode"] == "MEDIA_UPLOAD" and photo_post["files"][0]["sha256"] == photo.sha256
    video_post = await harness.sandbox.control.post(video_done.publish_id or "")
    assert video_post["source"] == "PULL_FROM_URL" and video_post["sha256"] == video.sha256


async def test_a_post_that_overtakes_its_account_connect_event_waits_for_it_and_is_published(
    harness: Harness, video_3s: Path
) -> None:
    # The request can reach Kafka before auth_service's connect event does (outbox, relay, another
    # topic): it must wait for the account, not be rejected as unknown_account (nothing lost).
    video = await harness.put_file("videos/early.mp4", video_3s)
    async with running_service(harness.settings(PUBLISH_UNKNOWN_ACCOUNT_GRACE_S="60")):
        post_id = await harness.request_post(post_request("early-1", video.uri, account_id="acc-late"))
        await harness.wait_state(post_id, "validating")
        await harness.connect_account("acc-late", "alice")  # the connect event arrives afterwards
        published = await harness.wait_state(post_id, "published")
    assert "rejected" not in harness.log.states(post_id)
    assert (await harness.sandbox.control.post(published.publish_id or ""))["sha256"] == video.sha256


async def test_an_authorization_removed_that_overtakes_the_connect_is_redelivered_not_lost(
    harness: Harness,
) -> None:
    """TikTok may deliver ``authorization.removed`` before this service has read the account's connect
    event. That delivery is answered 503 and not marked seen, so TikTok's redelivery (spec §8) reaches
    auth_service once the account is known; a third delivery is a duplicate."""
    import json
    import time

    import aiohttp

    from common.tiktok.webhooks import sign

    issued = await harness.sandbox.control.issue_token(harness.tiktok_app.client_key, "alice")
    hook = json.dumps(
        {
            "client_key": harness.tiktok_app.client_key,
            "event": "authorization.removed",
            "create_time": int(time.time()),
            "user_openid": issued.open_id,
            "content": json.dumps({"reason": 1}),
        }
    ).encode()

    def signed() -> dict[str, str]:
        return {"TikTok-Signature": sign(hook, harness.tiktok_app.client_secret, int(time.time()))}

    async with running_service(harness.settings()) as base, aiohttp.ClientSession() as http:
        url = f"{base}/v1/webhooks/tiktok"
        async with http.post(url, data=hook, headers=signed()) as r:
            assert r.status == 503, await r.text()
            assert (await r.json())["error"]["code"] == "account_not_known_yet"
        await harness.connect_account("acc-1", "alice")
        assert harness.open_ids["acc-1"] == issued.open_id

        async def redelivered() -> str | None:
            async with http.post(url, data=hook, headers=signed()) as r:
                return str((await r.json())["outcome"]) if r.status == 200 else None

        assert await wait_for(redelivered, 30, 0.2, description="a redelivery once the account is known") == (
            "authorization_removed"
        )
        async with http.post(url, data=hook, headers=signed()) as r:
            assert (await r.json())["outcome"] == "duplicate"
        await wait_for(
            lambda: [e for e in harness.log.refresh if e.reason == "authorization_removed"],
            30,
            description="the removal relayed to auth_service",
        )
    relayed = [e for e in harness.log.refresh if e.reason == "authorization_removed"]
    assert [e.account_id for e in relayed] == ["acc-1"]
