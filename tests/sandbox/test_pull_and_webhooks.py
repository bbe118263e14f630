"""§5.3 PULL_FROM_URL against a real local media server, §4.7 cancel, and §8 signed webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re

import pytest
from aiohttp import web

from tests.sandbox.conftest import payload
from tests.waiting import wait_for
from tiktok_sandbox.config import SandboxConfig

VIDEO_INIT = "/v2/post/publish/video/init/"
INBOX_INIT = "/v2/post/publish/inbox/video/init/"
CONTENT_INIT = "/v2/post/publish/content/init/"
CANCEL = "/v2/post/publish/cancel/"
MEDIA = payload(3_000_000, seed=7)


class LocalServer:
    """A loopback aiohttp server for media and webhook receiving."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.release = asyncio.Event()
        self.hooks: list[tuple[dict[str, str], bytes]] = []
        self.hook_statuses: list[int] = []
        self.app.add_routes(
            [
                web.get("/media/{name}", self.media),
                web.get("/media-redirect/{name}", self.redirect),
                web.get("/media-slow/{name}", self.slow),
                web.post("/hook", self.hook),
            ]
        )

    async def media(self, request):
        if request.match_info["name"] == "missing.mp4":
            raise web.HTTPNotFound()
        return web.Response(body=MEDIA, content_type="video/mp4")

    async def redirect(self, request):
        raise web.HTTPFound(f"/media/{request.match_info['name']}")

    async def slow(self, request):
        resp = web.StreamResponse()
        resp.content_length = len(MEDIA)
        await resp.prepare(request)
        await resp.write(MEDIA[:1000])
        await self.release.wait()
        await resp.write(MEDIA[1000:])
        return resp

    async def hook(self, request):
        self.hooks.append((dict(request.headers), await request.read()))
        status = self.hook_statuses.pop(0) if self.hook_statuses else 200
        return web.Response(status=status)

    async def __aenter__(self):
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc):
        self.release.set()
        await self.runner.cleanup()


@pytest.fixture
def sandbox_config(tmp_path):
    return SandboxConfig(
        data_dir=str(tmp_path),
        pull_allow_http=True,
        allow_ip_prefixes=True,
        webhook_retry_schedule_s=(0.05, 0.05, 0.05),
    )


@pytest.fixture
async def local():
    async with LocalServer() as server:
        yield server


@pytest.fixture
async def pull_world(world, local):
    await world.sb.control.update_app(
        world.app.client_key,
        verified_url_prefixes=[
            f"{local.base}/media/",
            f"{local.base}/media-redirect/",
            f"{local.base}/media-slow/",
        ],
        webhook_url=f"{local.base}/hook",
    )
    return world, local


def pull_body(url, privacy="SELF_ONLY"):
    return {
        "post_info": {"privacy_level": privacy},
        "source_info": {"source": "PULL_FROM_URL", "video_url": url},
    }


async def settled(world, publish_id, *states):
    async def check():
        post = await world.sb.control.post(publish_id)
        return post if post["status"] in states else None

    return await wait_for(check, timeout=10)


async def test_pull_from_url_downloads_the_bytes_and_publishes(pull_world):
    world, local = pull_world
    r = await world.api.post(VIDEO_INIT, world.t, pull_body(f"{local.base}/media/a.mp4"))
    assert (
        r.code == "ok"
        and re.fullmatch(r"v_pub_url~v2-1\.\d{19}", r.data["publish_id"])
        and "upload_url" not in r.data
    )
    post = await settled(world, r.data["publish_id"], "PROCESSING_DOWNLOAD", "PUBLISH_COMPLETE")
    await wait_for(lambda: world.sb.store.posts[r.data["publish_id"]].transfer_done_at, timeout=10)
    await world.sb.control.advance_time(3)
    post = await world.sb.control.post(r.data["publish_id"])
    assert post["status"] == "PUBLISH_COMPLETE"
    assert post["sha256"] == hashlib.sha256(MEDIA).hexdigest() and post["size"] == len(MEDIA)
    s = await world.api.status(world.t, r.data["publish_id"])
    assert s.data["downloaded_bytes"] == len(MEDIA) and "uploaded_bytes" not in s.data


async def test_pull_refuses_redirects(pull_world):
    world, local = pull_world
    r = await world.api.post(VIDEO_INIT, world.t, pull_body(f"{local.base}/media-redirect/a.mp4"))
    post = await settled(world, r.data["publish_id"], "FAILED")
    assert post["fail_reason"] == "video_pull_failed"


async def test_pull_of_missing_url_fails_with_video_pull_failed(pull_world):
    world, local = pull_world
    r = await world.api.post(INBOX_INIT, world.t, pull_body(f"{local.base}/media/missing.mp4"))
    assert r.data["publish_id"].startswith("v_inbox_url~v2.")
    post = await settled(world, r.data["publish_id"], "FAILED")
    assert post["fail_reason"] == "video_pull_failed"


async def test_pull_times_out_after_one_hour(pull_world):
    world, local = pull_world
    r = await world.api.post(VIDEO_INIT, world.t, pull_body(f"{local.base}/media-slow/a.mp4"))
    await wait_for(lambda: world.sb.store.posts[r.data["publish_id"]].downloaded_bytes > 0, timeout=10)
    await world.sb.control.advance_time(3601)
    post = await settled(world, r.data["publish_id"], "FAILED")
    assert post["fail_reason"] == "video_pull_failed"


async def test_cancel_while_downloading_fails_with_publish_cancelled(pull_world):
    world, local = pull_world
    r = await world.api.post(VIDEO_INIT, world.t, pull_body(f"{local.base}/media-slow/a.mp4"))
    publish_id = r.data["publish_id"]
    await wait_for(lambda: world.sb.store.posts[publish_id].downloaded_bytes > 0, timeout=10)
    c = await world.api.post(CANCEL, world.t, {"publish_id": publish_id})
    assert c.status == 200 and set(c.body) == {"error"} and c.code == "ok"
    s = await world.api.status(world.t, publish_id)
    assert s.data["status"] == "FAILED" and s.data["fail_reason"] == "publish_cancelled"
    again = await world.api.post(CANCEL, world.t, {"publish_id": publish_id})
    assert again.code == "publish_not_cancellable"


async def test_photo_pull_downloads_every_image(pull_world):
    world, local = pull_world
    body = {
        "media_type": "PHOTO",
        "post_mode": "MEDIA_UPLOAD",
        "post_info": {},
        "source_info": {
            "source": "PULL_FROM_URL",
            "photo_images": [f"{local.base}/media/1.jpg", f"{local.base}/media/2.jpg"],
            "photo_cover_index": 1,
        },
    }
    r = await world.api.post(CONTENT_INIT, world.t, body)
    await wait_for(lambda: world.sb.store.posts[r.data["publish_id"]].transfer_done_at, timeout=10)
    await world.sb.control.advance_time(3)
    post = await world.sb.control.post(r.data["publish_id"])
    assert post["status"] == "SEND_TO_USER_INBOX"
    assert [f["sha256"] for f in post["files"]] == [hashlib.sha256(MEDIA).hexdigest()] * 2


async def test_photo_pull_failure_is_photo_pull_failed(pull_world):
    world, local = pull_world
    body = {
        "media_type": "PHOTO",
        "post_mode": "DIRECT_POST",
        "post_info": {"privacy_level": "SELF_ONLY"},
        "source_info": {
            "source": "PULL_FROM_URL",
            "photo_images": [f"{local.base}/media/missing.mp4"],
            "photo_cover_index": 0,
        },
    }
    r = await world.api.post(CONTENT_INIT, world.t, body)
    post = await settled(world, r.data["publish_id"], "FAILED")
    assert post["fail_reason"] == "photo_pull_failed"


# ---- webhooks --------------------------------------------------------------------------------------


def verify(secret: str, headers: dict[str, str], body: bytes) -> dict:
    parts = dict(p.split("=", 1) for p in headers["TikTok-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["s"], expected)
    return json.loads(body)


async def test_webhooks_are_signed_with_the_client_secret(pull_world):
    world, local = pull_world
    publish_id = (await world.api.init_direct(world.t, 1000)).data["publish_id"]
    url = world.sb.store.posts[publish_id].upload
    upload_url = f"{world.sb.base_url}/video/?upload_id={url.upload_id}&upload_token={url.upload_token}"
    await world.api.put(upload_url, payload(1000), 0, 1000)
    await world.sb.control.advance_time(3)
    await wait_for(lambda: local.hooks, timeout=5)
    headers, body = local.hooks[0]
    event = verify(world.app.client_secret, headers, body)
    assert event["event"] == "post.publish.complete" and event["client_key"] == world.app.client_key
    assert event["user_openid"] == world.token.open_id and isinstance(event["create_time"], int)
    content = json.loads(event["content"])  # a JSON string, parsed twice (§8.2)
    assert content == {"publish_id": publish_id, "publish_type": "DIRECT_POST"}


async def test_webhooks_retry_until_200(pull_world):
    world, local = pull_world
    local.hook_statuses = [500, 503]
    await world.sb.control.revoke_token(world.t, reason=4)
    await wait_for(lambda: len(local.hooks) == 3, timeout=5)
    bodies = [verify(world.app.client_secret, h, b) for h, b in local.hooks]
    assert all(b["event"] == "authorization.removed" for b in bodies)
    assert json.loads(bodies[0]["content"]) == {"reason": 4}
    deliveries = await world.sb.control.webhooks()
    assert deliveries[0]["delivered"] and [a["status"] for a in deliveries[0]["attempts"]] == [500, 503, 200]


async def test_webhooks_are_dropped_after_the_retry_schedule(pull_world):
    world, local = pull_world
    local.hook_statuses = [500] * 10
    await world.sb.control.revoke_token(world.t)

    async def dropped():
        return (await world.sb.control.webhooks())[0]["dropped"]

    await wait_for(dropped, timeout=5)
    assert len(local.hooks) == 4  # the first try plus three retries
