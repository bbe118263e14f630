"""The `/_sandbox` control API: faults, time, tokens, introspection and call counters."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from tests.sandbox.conftest import LOG_ID, MIB, payload
from tiktok_sandbox.config import AppSeed, CreatorSeed, SandboxConfig, load_config
from tiktok_sandbox.testing import ControlAPIError

CREATOR_INFO = "/v2/post/publish/creator_info/query/"
VIDEO_INIT = "/v2/post/publish/video/init/"


async def test_fault_fails_the_next_n_requests_with_a_status_and_code(world):
    await world.sb.control.inject_fault(VIDEO_INIT, count=2, status=500, error_code="internal_error")
    first = await world.api.init_direct(world.t, 1000)
    assert (
        first.status == 500 and first.code == "internal_error" and LOG_ID.match(first.body["error"]["log_id"])
    )
    assert (await world.api.init_direct(world.t, 1000)).status == 500
    assert (await world.api.init_direct(world.t, 1000)).code == "ok"


async def test_fault_with_http_200_and_an_error_code(world):
    await world.sb.control.inject_fault(CREATOR_INFO, status=200, error_code="reached_active_user_cap")
    r = await world.api.post(CREATOR_INFO, world.t, {})
    assert r.status == 200 and r.code == "reached_active_user_cap"


async def test_fault_on_oauth_token_keeps_its_status_and_uses_the_oauth_error_shape(world):
    await world.sb.control.inject_fault("/v2/oauth/token/", status=503)
    r = await world.api.form("/v2/oauth/token/", {"grant_type": "refresh_token"})
    assert r.status == 503 and r.body["error"] == "temporarily_unavailable"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["x-tt-logid"] == r.body["log_id"] and LOG_ID.match(r.body["log_id"])
    await world.sb.control.inject_fault("/v2/oauth/token/", status=403)
    r = await world.api.form("/v2/oauth/token/", {"grant_type": "refresh_token"})
    assert r.status == 403 and r.body["error"] == "invalid_request"  # an OAuth code, never invalid_params


async def test_fault_with_only_an_oauth_code_answers_at_the_oauth_error_status(world):
    await world.sb.control.inject_fault("/v2/oauth/token/", error_code="invalid_grant")
    r = await world.api.form("/v2/oauth/token/", {"grant_type": "refresh_token"})
    assert r.status == 200 and r.body["error"] == "invalid_grant"  # oauth_error_status, 200 by default


@pytest.mark.parametrize(
    ("shape", "status", "expected_body", "content_type"),
    [
        ("empty", 403, b"", None),
        ("text", 502, b"<html>502 Bad Gateway</html>", "text/plain"),
        ("flat", 400, None, "application/json"),
        ("wrapped", 401, None, "application/json"),
        ("oauth", 401, None, "application/json"),
    ],
)
async def test_fault_shapes(world, shape, status, expected_body, content_type):
    await world.sb.control.inject_fault(
        VIDEO_INIT,
        status=status,
        shape=shape,
        body="<html>502 Bad Gateway</html>",
        message="The chunk size is invalid",
    )
    r = await world.api.raw("POST", VIDEO_INIT, world.t, b"{}")
    assert r.status == status and LOG_ID.match(r.headers["x-tt-logid"])
    assert r.headers.get("Content-Type", "").split(";")[0] == (content_type or "")
    if expected_body is not None:
        assert r.raw == expected_body
        return
    body = json.loads(r.raw)
    expected = {
        "flat": {
            "code": "invalid_params",
            "message": "The chunk size is invalid",
            "log_id": r.headers["x-tt-logid"],
        },
        "wrapped": {
            "data": {},
            "error": {
                "code": "access_token_invalid",
                "message": "The chunk size is invalid",
                "log_id": r.headers["x-tt-logid"],
            },
        },
        "oauth": {
            "error": "access_token_invalid",
            "error_description": "The chunk size is invalid",
            "log_id": r.headers["x-tt-logid"],
        },
    }[shape]
    assert body == expected


async def test_fault_without_log_id_header(world):
    await world.sb.control.inject_fault(VIDEO_INIT, status=403, shape="empty", log_id_header=False)
    r = await world.api.raw("POST", VIDEO_INIT, world.t, b"{}")
    assert r.status == 403 and "x-tt-logid" not in r.headers and r.raw == b""


async def test_fault_with_a_bad_shape_or_status_is_refused(world):
    with pytest.raises(ControlAPIError):
        await world.sb.control.inject_fault(VIDEO_INIT, status=403, shape="xml")
    with pytest.raises(ControlAPIError):
        await world.sb.control.inject_fault(VIDEO_INIT, status=1000)


async def test_fault_latency_delays_the_answer(world):
    await world.sb.control.inject_fault(CREATOR_INFO, latency_ms=300)
    started = time.monotonic()
    assert (await world.api.post(CREATOR_INFO, world.t, {})).code == "ok"
    assert time.monotonic() - started >= 0.3


async def test_fault_until_cleared(world):
    await world.sb.control.inject_fault(CREATOR_INFO, count=None, status=502)
    for _ in range(3):
        assert (await world.api.post(CREATOR_INFO, world.t, {})).status == 502
    await world.sb.control.clear_faults()
    assert (await world.api.post(CREATOR_INFO, world.t, {})).status == 200


async def test_expire_token_now(world):
    await world.sb.control.expire_token(world.t)
    r = await world.api.post(CREATOR_INFO, world.t, {})
    assert r.status == 401 and r.code == "access_token_invalid"


async def test_revoke_token_now_emits_authorization_removed_with_reason(world):
    await world.sb.control.revoke_token(world.t, reason=2)
    assert (await world.api.post(CREATOR_INFO, world.t, {})).status == 401
    (event,) = await world.sb.control.events()
    assert event["event"] == "authorization.removed" and event["content"] == {"reason": 2}


async def test_freeze_and_advance_time(world):
    frozen = await world.sb.control.freeze_time()
    await asyncio.sleep(0.05)
    same = await world.sb.control.advance_time(0)
    assert same["now"] == frozen["now"] and same["frozen"]
    later = await world.sb.control.advance_time(3600)
    assert later["now"] == pytest.approx(frozen["now"] + 3600)
    running = await world.sb.control.freeze_time(False)
    assert not running["frozen"] and running["offset_s"] == pytest.approx(3600, abs=1)


async def test_time_cannot_go_backwards(world):
    with pytest.raises(ControlAPIError):
        await world.sb.control.advance_time(-1)


async def test_posts_introspection_proves_the_bytes_that_arrived(world):
    data = payload(6 * MIB)
    r = await world.api.init_direct(world.t, len(data), privacy="MUTUAL_FOLLOW_FRIENDS", title="hi #cat")
    await world.api.upload(r.data["upload_url"], data, len(data))
    (post,) = await world.sb.control.posts()
    assert post["publish_id"] == r.data["publish_id"] and post["creator"] == "alice"
    assert post["sha256"] == hashlib.sha256(data).hexdigest() and post["size"] == len(data)
    assert (
        post["post_info"]["title"] == "hi #cat" and post["effective_privacy_level"] == "MUTUAL_FOLLOW_FRIENDS"
    )
    assert post["upload"]["chunks_received"] == 1 and post["status"] == "PROCESSING_UPLOAD"
    assert await world.sb.control.posts(creator="bob") == []


async def test_call_counters_per_token_and_endpoint_with_rate_limit_rejections(world):
    for _ in range(7):
        await world.api.init_direct(world.t, 1000)
    await world.api.post(CREATOR_INFO, world.t, {})
    counts = await world.sb.control.call_counts()
    rows = {(r["token"], r["endpoint"]): r for r in counts["calls"]}
    init = rows[(world.t, VIDEO_INIT)]
    assert init["calls"] == 7 and init["accepted"] == 6 and init["rate_limited"] == 1
    assert init["max_in_window"] == 6
    assert rows[(world.t, CREATOR_INFO)]["calls"] == 1
    assert counts["rate_limited_total"] == 1 and counts["window_s"] == 60


@pytest.mark.parametrize(
    "sandbox_config", [SandboxConfig(rate_limits={VIDEO_INIT: 2}, rate_window_kind="fixed")]
)
async def test_rate_limits_and_window_are_configurable(world):
    statuses = [(await world.api.init_direct(world.t, 1000)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await world.api.post(CREATOR_INFO, world.t, {})).status == 200  # unlimited now


async def test_control_api_rejects_unknown_fields(world):
    with pytest.raises(ControlAPIError) as e:
        await world.sb.control.create_creator("zed", privte=True)
    assert e.value.status == 400


async def test_control_api_404_for_unknown_objects(world):
    with pytest.raises(ControlAPIError) as e:
        await world.sb.control.post("v_pub_file~v2-1.0")
    assert e.value.status == 404


async def test_reset_clears_state_but_keeps_seeds(tmp_path):
    from tiktok_sandbox.testing import run_sandbox

    config = SandboxConfig(
        data_dir=str(tmp_path),
        apps=(AppSeed(client_key="seeded", client_secret="s3cret", redirect_uris=("https://a.example/cb",)),),
        creators=(CreatorSeed(username="demo"),),
    )
    async with run_sandbox(config) as sb:
        await sb.control.create_creator("extra")
        await sb.control.reset()
        names = [c["username"] for c in await sb.control.request("GET", "/creators")]
        assert names == ["demo"]
        assert (await sb.control.request("GET", "/apps/seeded"))["client_secret"] == "s3cret"


def test_load_config_from_json_file_and_env(tmp_path):
    path = tmp_path / "sandbox.json"
    path.write_text(
        json.dumps(
            {
                "token_preset": "2026",
                "apps": [{"client_key": "k", "client_secret": "s", "scopes": ["video.upload"]}],
                "creators": [{"username": "demo", "private": True}],
            }
        )
    )
    config = load_config(
        str(path), {"TIKTOK_SANDBOX_AUTO_APPROVE": "true", "TIKTOK_SANDBOX_WEBHOOK_RETRY_SCHEDULE_S": "1,2"}
    )
    assert config.access_ttl == 7200 and config.auto_approve and config.webhook_retry_schedule_s == (1.0, 2.0)
    assert config.apps[0].scopes == ("video.upload",) and config.creators[0].private
    assert "client_secret" not in repr(config.apps[0]) or "'s'" not in repr(config.apps[0])


def test_load_config_rejects_unknown_knobs(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"auto_aprove": True}))
    with pytest.raises(ValueError, match="auto_aprove"):
        load_config(str(path), {})
