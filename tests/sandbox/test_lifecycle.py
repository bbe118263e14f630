"""§4.6-§4.8 and §9.4: status fetch, the processing/moderation timeline, cancel and control actions."""

from __future__ import annotations

import re

import pytest

from tests.sandbox.conftest import MIB, payload
from tests.waiting import wait_for
from tiktok_sandbox.config import SandboxConfig

STATUS = "/v2/post/publish/status/fetch/"
CANCEL = "/v2/post/publish/cancel/"


async def uploaded_direct(world, privacy="PUBLIC_TO_EVERYONE", size=1000):
    r = await world.api.init_direct(world.t, size, privacy=privacy)
    assert (await world.api.put(r.data["upload_url"], payload(size), 0, size)).status == 201
    return r.data["publish_id"]


async def uploaded_inbox(world, size=1000):
    r = await world.api.init_inbox(world.t, size)
    assert (await world.api.put(r.data["upload_url"], payload(size), 0, size)).status == 201
    return r.data["publish_id"]


async def test_status_unknown_publish_id_is_answered_as_observed(world):
    r = await world.api.status(world.t, "v_pub_file~v2-1.7400000000000000001")
    assert (
        r.status == 400 and r.code == "invalid_params" and r.body["error"]["message"] == "invalid_publish_id"
    )


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(unknown_publish_id="documented")])
async def test_status_unknown_publish_id_documented_knob(world):
    r = await world.api.status(world.t, "v_pub_file~v2-1.7400000000000000001")
    assert r.status == 400 and r.code == "invalid_publish_id"


async def test_status_of_another_users_post_is_token_not_authorized(world):
    publish_id = await uploaded_direct(world)
    await world.sb.control.create_creator("bob")
    bob = await world.sb.control.issue_token(world.app.client_key, "bob")
    r = await world.api.status(bob.access_token, publish_id)
    assert r.status == 400 and r.code == "token_not_authorized_for_specified_publish_id"


async def test_status_needs_video_upload_or_video_publish_scope(world):
    publish_id = await uploaded_direct(world)
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["user.info.basic"])
    assert (await world.api.status(token.access_token, publish_id)).code == "scope_not_authorized"
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["video.upload"])
    assert (await world.api.status(token.access_token, publish_id)).code == "ok"


async def test_status_rate_limit_is_30_per_minute(world):
    publish_id = await uploaded_direct(world)
    statuses = [(await world.api.status(world.t, publish_id)).status for _ in range(31)]
    assert statuses == [200] * 30 + [429]


async def test_processing_lasts_at_least_2_seconds_after_the_last_chunk(world):
    await world.sb.control.freeze_time()
    publish_id = await uploaded_direct(world)
    await world.sb.control.advance_time(1.9)
    assert (await world.api.status(world.t, publish_id)).data["status"] == "PROCESSING_UPLOAD"
    await world.sb.control.advance_time(0.2)
    assert (await world.api.status(world.t, publish_id)).data["status"] == "PUBLISH_COMPLETE"


async def test_processing_delay_scales_with_size(world):
    await world.sb.control.freeze_time()
    size = 64 * MIB  # 64/512 * 30 s = 3.75 s
    publish_id = await uploaded_direct(world, size=size)
    await world.sb.control.advance_time(3.7)
    assert (await world.api.status(world.t, publish_id)).data["status"] == "PROCESSING_UPLOAD"
    await world.sb.control.advance_time(0.1)
    assert (await world.api.status(world.t, publish_id)).data["status"] == "PUBLISH_COMPLETE"


async def test_public_post_gets_a_19_digit_post_id_after_moderation(world):
    await world.sb.control.freeze_time()
    publish_id = await uploaded_direct(world)
    await world.sb.control.advance_time(2)
    s = await world.api.status(world.t, publish_id)
    assert s.data == {"status": "PUBLISH_COMPLETE", "uploaded_bytes": 1000}  # no post id yet: key omitted
    await world.sb.control.advance_time(5)
    s = await world.api.status(world.t, publish_id)
    (post_id,) = s.data["publicaly_available_post_id"]
    assert isinstance(post_id, int) and len(str(post_id)) == 19 and post_id > 2**53
    assert re.search(rf'"publicaly_available_post_id":\[{post_id}\]', await _raw_status(world, publish_id))
    events = await world.sb.control.events()
    assert [e["event"] for e in events] == ["post.publish.complete", "post.publish.publicly_available"]
    assert events[1]["content"] == {
        "publish_id": publish_id,
        "post_id": str(post_id),
        "publish_type": "DIRECT_POST",
    }


async def _raw_status(world, publish_id):
    async with world.api.http.post(
        world.sb.base_url + STATUS, json={"publish_id": publish_id}, headers=world.token.auth_header
    ) as r:
        return await r.text()


async def test_self_only_post_never_gets_a_post_id(world):
    publish_id = await uploaded_direct(world, privacy="SELF_ONLY")
    await world.sb.control.advance_time(3600)
    s = await world.api.status(world.t, publish_id)
    assert s.data["status"] == "PUBLISH_COMPLETE" and "publicaly_available_post_id" not in s.data


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(status_optional_keys="always")])
async def test_status_optional_keys_knob_keeps_them(world):
    publish_id = await uploaded_direct(world, privacy="SELF_ONLY")
    await world.sb.control.advance_time(3600)
    s = await world.api.status(world.t, publish_id)
    assert s.data == {"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": [], "uploaded_bytes": 1000}


async def test_finish_moderation_control_assigns_the_post_id_now(world):
    await world.sb.control.freeze_time()
    publish_id = await uploaded_direct(world)
    await world.sb.control.advance_time(2)
    post = await world.sb.control.finish_moderation(publish_id)
    assert len(post["publicaly_available_post_id"]) == 1


async def test_transitions_fire_without_polling_via_the_background_ticker(world):
    publish_id = await uploaded_direct(world, privacy="SELF_ONLY")
    await world.sb.control.advance_time(3)
    await wait_for(lambda: world.sb.store.posts[publish_id].status == "PUBLISH_COMPLETE", timeout=5)


async def test_inbox_video_goes_to_user_inbox_then_user_posts(world):
    publish_id = await uploaded_inbox(world)
    await world.sb.control.advance_time(2)
    s = await world.api.status(world.t, publish_id)
    assert s.data["status"] == "SEND_TO_USER_INBOX"
    post = await world.sb.control.user_posts_draft(publish_id, "PUBLIC_TO_EVERYONE")
    assert post["status"] == "PUBLISH_COMPLETE"
    events = await world.sb.control.events()
    assert [e["event"] for e in events] == ["post.publish.inbox_delivered", "post.publish.complete"]
    assert all(e["content"]["publish_type"] == "INBOX_SHARE" for e in events)


async def test_user_posts_draft_requires_send_to_user_inbox(world):
    publish_id = await uploaded_direct(world)
    with pytest.raises(Exception, match="409"):
        await world.sb.control.user_posts_draft(publish_id)


async def test_forced_fail_reason_applies_when_processing_ends(world):
    publish_id = await uploaded_direct(world)
    await world.sb.control.set_fail_reason(publish_id, "duration_check_failed", when="after_processing")
    assert (await world.api.status(world.t, publish_id)).data["status"] == "PROCESSING_UPLOAD"
    await world.sb.control.advance_time(3)
    s = await world.api.status(world.t, publish_id)
    assert s.data["status"] == "FAILED" and s.data["fail_reason"] == "duration_check_failed"
    failed = [e for e in await world.sb.control.events() if e["event"] == "post.publish.failed"]
    assert failed[0]["content"]["reason"] == "duration_check_failed"


async def test_forced_fail_now(world):
    r = await world.api.init_direct(world.t, 1000)
    await world.sb.control.set_fail_reason(r.data["publish_id"], "spam_risk_text")
    s = await world.api.status(world.t, r.data["publish_id"])
    assert s.data["fail_reason"] == "spam_risk_text"


async def test_revoking_mid_process_fails_the_post_with_auth_removed(world):
    r = await world.api.init_direct(world.t, 1000)
    await world.sb.control.revoke_token(world.t, reason=1)
    post = await world.sb.control.post(r.data["publish_id"])
    assert post["status"] == "FAILED" and post["fail_reason"] == "auth_removed"
    events = [e["event"] for e in await world.sb.control.events()]
    assert events == ["post.publish.failed", "authorization.removed"]


async def test_cancel_of_file_upload_is_not_cancellable(world):
    publish_id = await uploaded_direct(world)
    r = await world.api.post(CANCEL, world.t, {"publish_id": publish_id})
    assert r.status == 400 and r.code == "publish_not_cancellable"


async def test_cancel_unknown_publish_id(world):
    r = await world.api.post(CANCEL, world.t, {"publish_id": "nope"})
    assert (
        r.status == 400 and r.code == "invalid_params" and r.body["error"]["message"] == "invalid_publish_id"
    )
