"""Answers shaped like TikTok's (issue 13, points 7-12): no input gets a 500, ids and bodies as observed."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.sandbox.conftest import LOG_ID, MIB, payload
from tiktok_sandbox.config import SandboxConfig

VIDEO_INIT = "/v2/post/publish/video/init/"
INBOX_INIT = "/v2/post/publish/inbox/video/init/"
CONTENT_INIT = "/v2/post/publish/content/init/"
STATUS = "/v2/post/publish/status/fetch/"
VERIFIED = "https://media.example.com/"


def _file_source(size: int = 1000) -> dict[str, object]:
    return {"source": "FILE_UPLOAD", "video_size": size, "chunk_size": size, "total_chunk_count": 1}


async def _error(world, path: str, raw: bytes) -> tuple[int, str, str]:
    r = await world.api.raw("POST", path, world.t, raw)
    assert r.headers["Content-Type"].startswith("application/json"), r.raw[:200]
    body = json.loads(r.raw)
    return r.status, body["error"]["code"], body["error"]["message"]


async def test_lone_surrogate_in_a_title_is_invalid_params(world):
    # JSON may carry "\ud800" escaped; no valid text holds it. This answered a text 500 before.
    raw = (
        b'{"post_info":{"title":"cat \\ud800","privacy_level":"SELF_ONLY"},"source_info":'
        + json.dumps(_file_source()).encode()
        + b"}"
    )
    assert await _error(world, VIDEO_INIT, raw) == (
        400,
        "invalid_params",
        "The title is not valid Unicode text",
    )
    photo = {
        "media_type": "PHOTO",
        "post_mode": "MEDIA_UPLOAD",
        "post_info": {"description": "x"},
        "source_info": {
            "source": "PULL_FROM_URL",
            "photo_images": [VERIFIED + "a.webp"],
            "photo_cover_index": 0,
        },
    }
    raw = json.dumps(photo).replace('"x"', '"\\udfff"').encode()
    assert await _error(world, CONTENT_INIT, raw) == (
        400,
        "invalid_params",
        "The description is not valid Unicode text",
    )


@pytest.mark.parametrize(
    "url", ["https://[::1/v.mp4", "https://media.example.com:99999/v.mp4", "https://a\ud800.com/"]
)
async def test_malformed_video_url_is_invalid_params(world, url):
    body = {"source_info": {"source": "PULL_FROM_URL", "video_url": url}}
    raw = json.dumps(body).encode()
    assert await _error(world, INBOX_INIT, raw) == (400, "invalid_params", "video_url is not a valid URL")


async def test_malformed_photo_url_is_invalid_params(world):
    body = {
        "media_type": "PHOTO",
        "post_mode": "MEDIA_UPLOAD",
        "source_info": {
            "source": "PULL_FROM_URL",
            "photo_images": [VERIFIED + "a.webp", "https://[::1/v.webp"],
            "photo_cover_index": 0,
        },
    }
    raw = json.dumps(body).encode()
    assert await _error(world, CONTENT_INIT, raw) == (
        400,
        "invalid_params",
        "photo_images is not a valid URL",
    )


@pytest.mark.parametrize("path", [VIDEO_INIT, INBOX_INIT, CONTENT_INIT, STATUS, "/v2/post/publish/cancel/"])
async def test_deeply_nested_json_is_invalid_params(world, path):
    status, code, message = await _error(world, path, b"[" * 100_000 + b"]" * 100_000)
    assert (status, code) == (400, "invalid_params") and "JSON" in message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/post/publish/video/init"),
        ("POST", "/v2/oauth/token"),
        ("GET", "/v2/user/info"),
        ("PUT", "/video?upload_id=x&upload_token=y"),
        ("POST", "/v2/post/publish/no_such_thing/"),
    ],
)
async def test_unrouted_paths_get_the_gateways_text_404(world, method, path):
    r = await world.api.raw(method, path, world.t, b"{}")
    assert r.status == 404 and r.raw == b"Unsupported path(Janus)"
    assert r.headers["Content-Type"].startswith("text/plain")


async def test_ids_have_tiktoks_observed_lengths(world):
    r = await world.api.init_direct(world.t, 1000)
    assert re.fullmatch(r"v_pub_file~v2-1\.\d{19}", r.data["publish_id"])
    assert len(r.body["error"]["log_id"]) == 34 and LOG_ID.match(r.body["error"]["log_id"])
    bad = await world.api.status(world.t, "nope")
    assert len(bad.body["error"]["log_id"]) == 34


async def test_upload_put_answers_without_a_body_by_default(world):
    r = await world.api.init_direct(world.t, 1000)
    put = await world.api.put(r.data["upload_url"], payload(1000), 0, 1000)
    assert put.status == 201 and put.body == "" and "Content-Type" not in put.headers
    assert put.headers["Content-Range"] == "bytes 0-999/1000"
    again = await world.api.put(r.data["upload_url"], payload(1000), 0, 1000)
    assert again.status == 416 and again.body == "" and "Content-Type" not in again.headers


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(upload_response_body="json")])
async def test_upload_put_json_body_knob(world):
    r = await world.api.init_direct(world.t, 1000)
    put = await world.api.put(r.data["upload_url"], payload(1000), 0, 1000)
    assert put.status == 201 and json.loads(put.body) == {"error": {"code": "ok", "message": ""}}
    assert put.headers["Content-Type"].startswith("application/json")


async def test_octet_stream_put_is_refused_by_default(world):
    r = await world.api.init_direct(world.t, 1000)
    put = await world.api.put(
        r.data["upload_url"], payload(1000), 0, 1000, content_type="application/octet-stream"
    )
    assert put.status == 400


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(upload_content_types="any")])
async def test_put_content_type_knob_accepts_octet_stream(world):
    size = 6 * MIB
    r = await world.api.init_direct(world.t, size, chunk=5 * MIB)
    data = payload(size)
    put = await world.api.put(r.data["upload_url"], data, 0, size, content_type="application/octet-stream")
    assert put.status == 201


async def test_reset_resets_the_clock(world):
    await world.sb.control.advance_time(10 * 86400)
    await world.sb.control.freeze_time()
    await world.sb.control.reset()
    now = await world.sb.control.request("GET", "/time")
    assert not now["frozen"] and abs(now["offset_s"]) < 1 and abs(now["now"] - time.time()) < 5
    app = await world.sb.control.create_app()
    await world.sb.control.create_creator("bob")
    token = await world.sb.control.issue_token(app.client_key, "bob")
    r = await world.api.init_direct(token.access_token, 1000)
    stamp = r.body["error"]["log_id"][:8]
    assert (
        stamp == time.strftime("%Y%m%d", time.gmtime()) or abs(int(stamp) - int(time.strftime("%Y%m%d"))) <= 1
    )


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(token_includes_refresh_expires_in=False)])
async def test_token_answer_without_refresh_expires_in_knob(world):
    token = await world.sb.control.issue_token(world.app.client_key, "alice")
    assert token.refresh_expires_in is None
