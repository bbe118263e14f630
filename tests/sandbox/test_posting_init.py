"""§4 and §9.2: creator_info and the init endpoints, checked in the documented validation order."""

from __future__ import annotations

import re

import pytest

from tests.sandbox.conftest import LOG_ID, MIB
from tiktok_sandbox.config import SandboxConfig

VIDEO_INIT = "/v2/post/publish/video/init/"
INBOX_INIT = "/v2/post/publish/inbox/video/init/"
CONTENT_INIT = "/v2/post/publish/content/init/"
CREATOR_INFO = "/v2/post/publish/creator_info/query/"


def photo_body(mode="DIRECT_POST", images=None, cover=0, **post_info):
    info = {"privacy_level": "SELF_ONLY", **post_info} if mode == "DIRECT_POST" else post_info
    return {
        "media_type": "PHOTO",
        "post_mode": mode,
        "post_info": info,
        "source_info": {
            "source": "PULL_FROM_URL",
            "photo_images": images if images is not None else ["https://media.example.com/a.webp"],
            "photo_cover_index": cover,
        },
    }


def pull_body(url, privacy="SELF_ONLY"):
    return {
        "post_info": {"privacy_level": privacy},
        "source_info": {"source": "PULL_FROM_URL", "video_url": url},
    }


# ---- creator_info ----------------------------------------------------------------------------------


async def test_creator_info_returns_the_creator_profile(world):
    r = await world.api.post(CREATOR_INFO, world.t, {})
    assert r.status == 200 and r.code == "ok" and LOG_ID.match(r.body["error"]["log_id"])
    assert r.data["creator_username"] == "alice" and r.data["creator_nickname"] == "Alice"
    assert r.data["privacy_level_options"] == ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    assert r.data["max_video_post_duration_sec"] == 600
    assert {"comment_disabled", "duet_disabled", "stitch_disabled", "creator_avatar_url"} <= set(r.data)


async def test_creator_info_accepts_no_body(world):
    r = await world.api.post(CREATOR_INFO, world.t, raw=b"")
    assert r.code == "ok"


async def test_creator_info_private_account_options_and_forced_duet_stitch(world):
    await world.sb.control.update_creator("alice", private=True, max_video_post_duration_sec=180)
    r = await world.api.post(CREATOR_INFO, world.t, {})
    assert r.data["privacy_level_options"] == ["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    assert r.data["duet_disabled"] and r.data["stitch_disabled"]
    assert r.data["max_video_post_duration_sec"] == 180


async def test_creator_info_requires_video_publish_scope(world):
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["video.upload"])
    r = await world.api.post(CREATOR_INFO, token.access_token, {})
    assert r.status == 401 and r.code == "scope_not_authorized"


async def test_creator_info_banned_creator_answers_http_200_with_code(world):
    await world.sb.control.update_creator("alice", banned=True)
    r = await world.api.post(CREATOR_INFO, world.t, {})
    assert r.status == 200 and r.code == "spam_risk_user_banned_from_posting"


async def test_creator_info_daily_cap_answers_http_200_with_code(world):
    await world.sb.control.update_creator("alice", daily_post_cap=1)
    assert (await world.api.init_direct(world.t, 1000)).code == "ok"
    r = await world.api.post(CREATOR_INFO, world.t, {})
    assert r.status == 200 and r.code == "spam_risk_too_many_posts"


async def test_creator_info_rate_limit_is_20_per_minute_per_token(world):
    codes = [(await world.api.post(CREATOR_INFO, world.t, {})).status for _ in range(21)]
    assert codes == [200] * 20 + [429]
    await world.sb.control.advance_time(61)
    assert (await world.api.post(CREATOR_INFO, world.t, {})).status == 200


# ---- steps 1-3: token, scope, rate limit -----------------------------------------------------------


async def test_init_without_authorization_header_is_access_token_invalid(world):
    r = await world.api.post(VIDEO_INIT, None, {})
    assert r.status == 401 and r.code == "access_token_invalid" and r.data == {}


async def test_init_with_expired_token_is_access_token_invalid(world):
    await world.sb.control.advance_time(86401)
    r = await world.api.init_direct(world.t, 1000)
    assert r.status == 401 and r.code == "access_token_invalid"


async def test_direct_init_requires_video_publish_scope(world):
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["video.upload"])
    r = await world.api.init_direct(token.access_token, 1000)
    assert r.status == 401 and r.code == "scope_not_authorized"


async def test_inbox_init_requires_video_upload_scope(world):
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["video.publish"])
    r = await world.api.init_inbox(token.access_token, 1000)
    assert r.status == 401 and r.code == "scope_not_authorized"


async def test_init_rate_limit_is_6_per_minute_per_token(world):
    statuses = [(await world.api.init_direct(world.t, 1000)).status for _ in range(7)]
    assert statuses == [200] * 6 + [429]
    other = await world.sb.control.issue_token(world.app.client_key, "alice")
    assert (await world.api.init_direct(other.access_token, 1000)).status == 200
    await world.sb.control.advance_time(60)
    assert (await world.api.init_direct(world.t, 1000)).status == 200


async def test_init_rate_limit_is_per_endpoint(world):
    for _ in range(6):
        assert (await world.api.init_direct(world.t, 1000)).status == 200
    assert (await world.api.init_inbox(world.t, 1000)).status == 200


async def test_validation_order_token_then_scope_then_rate_limit_then_body(world):
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["video.upload"])
    assert (await world.api.post(VIDEO_INIT, "act.bad!0000", {"junk": 1})).code == "access_token_invalid"
    assert (await world.api.post(VIDEO_INIT, token.access_token, {"junk": 1})).code == "scope_not_authorized"
    for _ in range(6):
        await world.api.post(VIDEO_INIT, world.t, {"junk": 1})
    assert (await world.api.post(VIDEO_INIT, world.t, {"junk": 1})).code == "rate_limit_exceeded"


# ---- step 4: body shape ----------------------------------------------------------------------------


async def test_init_rejects_invalid_json(world):
    r = await world.api.post(VIDEO_INIT, world.t, raw=b"{nope")
    assert r.status == 400 and r.code == "invalid_params"


async def test_init_rejects_unknown_source(world):
    body = {"post_info": {"privacy_level": "SELF_ONLY"}, "source_info": {"source": "S3"}}
    r = await world.api.post(VIDEO_INIT, world.t, body)
    assert r.status == 400 and r.code == "invalid_params"


async def test_missing_privacy_level_is_privacy_level_option_mismatch_by_default(world):
    body = {
        "post_info": {"title": "x"},
        "source_info": {"source": "FILE_UPLOAD", "video_size": 10, "chunk_size": 10, "total_chunk_count": 1},
    }
    r = await world.api.post(VIDEO_INIT, world.t, body)
    assert r.status == 403 and r.code == "privacy_level_option_mismatch"
    # Step 4 still comes first: a bad chunk plan is invalid_params even without a privacy_level.
    body["source_info"]["chunk_size"] = 5
    r = await world.api.post(VIDEO_INIT, world.t, body)
    assert r.status == 400 and r.code == "invalid_params"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(missing_privacy_level="invalid_params")])
async def test_missing_privacy_level_knob_answers_invalid_params(world):
    body = {"post_info": {"title": "x"}, "source_info": {"source": "FILE_UPLOAD", "video_size": 10}}
    r = await world.api.post(VIDEO_INIT, world.t, body)
    assert r.status == 400 and r.code == "invalid_params" and "privacy_level" in r.body["error"]["message"]


async def test_init_title_limit_is_2200_utf16_units(world):
    ok = await world.api.init_direct(world.t, 1000, title="😀" * 1100)  # 2 UTF-16 units each
    assert ok.code == "ok"
    too_long = await world.api.init_direct(world.t, 1000, title="😀" * 1100 + "a")
    assert too_long.status == 400 and too_long.code == "invalid_params"


async def test_init_rejects_non_boolean_toggles(world):
    r = await world.api.init_direct(world.t, 1000, disable_comment="yes")
    assert r.status == 400


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(strict_brand_toggle=True)])
async def test_init_strict_mode_requires_brand_content_toggle(world):
    assert (await world.api.init_direct(world.t, 1000)).status == 400
    assert (await world.api.init_direct(world.t, 1000, brand_content_toggle=False)).code == "ok"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(invalid_param_code="invalid_param")])
async def test_invalid_param_code_is_configurable(world):
    r = await world.api.init_direct(world.t, 1000, 999)
    assert r.code == "invalid_param"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(errors_include_data=False)])
async def test_errors_without_data_when_configured(world):
    r = await world.api.post(VIDEO_INIT, None, {})
    assert set(r.body) == {"error"}


async def test_init_requires_positive_file_upload_sizes(world):
    r = await world.api.init_direct(world.t, 1000, 1000, 0)
    assert r.status == 400 and r.code == "invalid_params"


async def test_init_rejects_chunk_below_5mib(world):
    r = await world.api.init_direct(world.t, 20 * MIB, 5 * MIB - 1, 4)
    assert r.status == 400 and r.body["error"]["message"] == "The chunk size is invalid"


async def test_init_rejects_chunk_above_64mib(world):
    r = await world.api.init_direct(world.t, 200 * MIB, 64 * MIB + 1, 3)
    assert r.status == 400 and r.body["error"]["message"] == "The chunk size is invalid"


async def test_init_accepts_chunk_bounds_5mib_and_64mib(world):
    assert (await world.api.init_direct(world.t, 20 * MIB, 5 * MIB, 4)).code == "ok"
    assert (await world.api.init_direct(world.t, 200 * MIB, 64 * MIB, 3)).code == "ok"


async def test_init_video_under_5mib_must_be_one_whole_chunk(world):
    assert (await world.api.init_direct(world.t, 4 * MIB, 4 * MIB, 1)).code == "ok"
    assert (await world.api.init_direct(world.t, 4 * MIB, 2 * MIB, 2)).status == 400
    assert (await world.api.init_direct(world.t, 4 * MIB, 4 * MIB, 2)).status == 400


async def test_init_whole_upload_allowed_up_to_64mib(world):
    assert (await world.api.init_direct(world.t, 64 * MIB, 64 * MIB, 1)).code == "ok"


async def test_init_total_chunk_count_must_be_floor_of_size_over_chunk(world):
    assert (
        await world.api.init_direct(world.t, 50_000_123, 10_000_000, 5)
    ).code == "ok"  # the guide's example
    r = await world.api.init_direct(world.t, 50_000_123, 10_000_000, 6)
    assert r.status == 400 and r.body["error"]["message"] == "The total chunk count is invalid"


async def test_init_video_over_64mib_needs_at_least_two_chunks(world):
    r = await world.api.init_direct(world.t, 100 * MIB, 64 * MIB, 1)
    assert r.status == 400


async def test_init_final_chunk_may_reach_just_under_128mib(world):
    # floor rule: the last chunk absorbs the remainder, so with 64 MiB chunks it can reach 128 MiB - 1
    assert (await world.api.init_direct(world.t, 192 * MIB - 1, 64 * MIB, 2)).code == "ok"


async def test_init_rejects_video_over_4gib(world):
    r = await world.api.init_direct(world.t, 4 * 1024 * MIB + 1, 64 * MIB, 64)
    assert r.status == 400


async def test_init_response_has_publish_id_and_absolute_upload_url(world):
    r = await world.api.init_direct(world.t, 1000)
    assert re.fullmatch(r"v_pub_file~v2-1\.\d+", r.data["publish_id"]) and len(r.data["publish_id"]) <= 64
    url = r.data["upload_url"]
    assert url.startswith(world.sb.base_url + "/video/?upload_id=") and "&upload_token=" in url
    assert len(url) <= 256


async def test_inbox_init_publish_id_format(world):
    r = await world.api.init_inbox(world.t, 1000)
    assert re.fullmatch(r"v_inbox_file~v2\.\d+", r.data["publish_id"])


@pytest.mark.parametrize(
    "sandbox_config", [SandboxConfig(public_base_url="https://open-upload.example.test")]
)
async def test_upload_url_uses_configured_public_base_url(world):
    r = await world.api.init_direct(world.t, 1000)
    assert r.data["upload_url"].startswith("https://open-upload.example.test/video/?upload_id=")


# ---- step 5: URL ownership -------------------------------------------------------------------------


async def test_pull_url_on_unverified_domain_is_url_ownership_unverified(world):
    r = await world.api.post(VIDEO_INIT, world.t, pull_body("https://cdn.other.com/a.mp4"))
    assert r.status == 403 and r.code == "url_ownership_unverified"


async def test_domain_property_covers_subdomains_not_parent(world):
    await world.sb.control.update_app(world.app.client_key, verified_domains=["static.example.com"])
    ok = await world.api.post(INBOX_INIT, world.t, pull_body("https://video.static.example.com/x.mp4"))
    assert ok.status == 200
    bad = await world.api.post(INBOX_INIT, world.t, pull_body("https://example.com/x.mp4"))
    assert bad.code == "url_ownership_unverified"


async def test_url_prefix_property_covers_only_that_prefix(world):
    await world.sb.control.update_app(
        world.app.client_key, verified_url_prefixes=["https://example.com/videos/user/"]
    )
    ok = await world.api.post(INBOX_INIT, world.t, pull_body("https://example.com/videos/user/123/a.mp4"))
    assert ok.status == 200
    bad = await world.api.post(INBOX_INIT, world.t, pull_body("https://example.com/videos/2023/user/a.mp4"))
    assert bad.code == "url_ownership_unverified"


async def test_pull_url_must_be_https_by_default(world):
    await world.sb.control.update_app(world.app.client_key, verified_domains=["example.com"])
    r = await world.api.post(INBOX_INIT, world.t, pull_body("http://example.com/a.mp4"))
    assert r.code == "url_ownership_unverified"


async def test_url_prefix_property_rejects_ip_hosts_by_default(world):
    with pytest.raises(Exception, match="400"):
        await world.sb.control.update_app(world.app.client_key, verified_url_prefixes=["https://10.0.0.1/v/"])


# ---- step 6: direct post gates ---------------------------------------------------------------------


async def test_privacy_level_not_in_creator_options_is_mismatch(world):
    r = await world.api.init_direct(world.t, 1000, privacy="FOLLOWER_OF_CREATOR")  # public account
    assert r.status == 403 and r.code == "privacy_level_option_mismatch"


async def test_unaudited_app_cannot_post_to_public_account_even_self_only(world):
    await world.sb.control.update_app(world.app.client_key, audited=False)
    r = await world.api.init_direct(world.t, 1000, privacy="SELF_ONLY")
    assert r.status == 403 and r.code == "unaudited_client_can_only_post_to_private_accounts"


async def test_unaudited_app_posts_to_private_account_are_forced_self_only(world):
    await world.sb.control.update_app(world.app.client_key, audited=False)
    await world.sb.control.update_creator("alice", private=True)
    r = await world.api.init_direct(world.t, 1000, privacy="FOLLOWER_OF_CREATOR")
    assert r.code == "ok"
    post = await world.sb.control.post(r.data["publish_id"])
    assert post["effective_privacy_level"] == "SELF_ONLY"
    assert post["requested_privacy_level"] == "FOLLOWER_OF_CREATOR"


async def test_unaudited_app_sixth_posting_user_is_reached_active_user_cap(sandbox, api):
    app = await sandbox.control.create_app(audited=False)
    for i in range(6):
        await sandbox.control.create_creator(f"u{i}", private=True)
        token = await sandbox.control.issue_token(app.client_key, f"u{i}")
        r = await api.init_direct(token.access_token, 1000)
        assert r.code == ("ok" if i < 5 else "reached_active_user_cap"), i
    await sandbox.control.advance_time(86401)
    token = await sandbox.control.issue_token(app.client_key, "u5")  # the old one expired too
    assert (await api.init_direct(token.access_token, 1000)).code == "ok"


async def test_banned_creator_is_refused(world):
    await world.sb.control.update_creator("alice", banned=True)
    r = await world.api.init_direct(world.t, 1000)
    assert r.status == 403 and r.code == "spam_risk_user_banned_from_posting"


async def test_daily_post_cap_15_shared_across_apps(world):
    other = await world.sb.control.create_app()
    t2 = await world.sb.control.issue_token(other.client_key, "alice")
    for i in range(15):
        token = world.t if i % 2 else t2.access_token
        assert (await world.api.init_direct(token, 1000)).code == "ok", i
        if i % 6 == 5:
            await world.sb.control.advance_time(61)
    await world.sb.control.advance_time(61)
    r = await world.api.init_direct(world.t, 1000)
    assert r.status == 403 and r.code == "spam_risk_too_many_posts"
    await world.sb.control.advance_time(86400)
    fresh = await world.sb.control.issue_token(world.app.client_key, "alice")
    assert (await world.api.init_direct(fresh.access_token, 1000)).code == "ok"


async def test_audited_app_active_creator_cap(sandbox, api):
    app = await sandbox.control.create_app(active_creator_cap=1)
    tokens = []
    for name in ("a", "b"):
        await sandbox.control.create_creator(name)
        tokens.append(await sandbox.control.issue_token(app.client_key, name))
    assert (await api.init_direct(tokens[0].access_token, 1000)).code == "ok"
    r = await api.init_direct(tokens[1].access_token, 1000)
    assert r.status == 403 and r.code == "reached_active_user_cap"


async def test_direct_post_disabled_in_app_configuration_is_refused(world):
    await world.sb.control.update_app(world.app.client_key, direct_post_enabled=False)
    assert (await world.api.init_direct(world.t, 1000)).code == "scope_not_authorized"
    assert (await world.api.init_inbox(world.t, 1000)).code == "ok"


async def test_interaction_toggles_forced_off_by_creator_settings(world):
    await world.sb.control.update_creator("alice", comment_disabled=True)
    r = await world.api.init_direct(world.t, 1000, disable_comment=False)
    post = await world.sb.control.post(r.data["publish_id"])
    assert post["effective_options"]["disable_comment"] is True


# ---- step 7: upload mode gates ---------------------------------------------------------------------


async def test_inbox_pending_share_cap_is_5_and_a_posted_draft_frees_a_slot(world):
    ids = []
    for _ in range(5):
        r = await world.api.init_inbox(world.t, 1000)
        assert r.code == "ok"
        ids.append(r.data["publish_id"])
    await world.sb.control.advance_time(61)
    r = await world.api.init_inbox(world.t, 1000)
    assert r.status == 403 and r.code == "spam_risk_too_many_pending_share"
    assert (await world.api.put(_upload_url(world, ids[0]), b"x" * 1000, 0, 1000)).status == 201
    await world.sb.control.advance_time(5)
    await world.sb.control.user_posts_draft(ids[0])
    assert (await world.api.init_inbox(world.t, 1000)).code == "ok"


def _upload_url(world, publish_id):
    task = world.sb.store.posts[publish_id].upload
    return f"{world.sb.base_url}/video/?upload_id={task.upload_id}&upload_token={task.upload_token}"


async def test_inbox_banned_creator_is_refused(world):
    await world.sb.control.update_creator("alice", banned=True)
    assert (await world.api.init_inbox(world.t, 1000)).code == "spam_risk_user_banned_from_posting"


# ---- photos ----------------------------------------------------------------------------------------


@pytest.fixture
async def photo_world(world):
    await world.sb.control.update_app(world.app.client_key, verified_domains=["media.example.com"])
    return world


async def test_photo_direct_post_init_returns_photo_publish_id(photo_world):
    r = await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body())
    assert r.code == "ok" and re.fullmatch(r"p_pub_url~v2\.\d+", r.data["publish_id"])
    assert "upload_url" not in r.data


async def test_photo_media_upload_publish_id_format(photo_world):
    r = await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body("MEDIA_UPLOAD"))
    assert r.code == "ok" and r.data["publish_id"].startswith("p_inbox_url~v2.")


async def test_photo_direct_post_requires_video_publish_scope(photo_world):
    token = await photo_world.sb.control.issue_token(photo_world.app.client_key, "alice", ["video.upload"])
    assert (
        await photo_world.api.post(CONTENT_INIT, token.access_token, photo_body())
    ).code == "scope_not_authorized"
    r = await photo_world.api.post(CONTENT_INIT, token.access_token, photo_body("MEDIA_UPLOAD"))
    assert r.code == "ok"


async def test_photo_only_pull_from_url(photo_world):
    body = photo_body()
    body["source_info"]["source"] = "FILE_UPLOAD"
    assert (await photo_world.api.post(CONTENT_INIT, photo_world.t, body)).status == 400


async def test_photo_media_type_must_be_photo(photo_world):
    body = photo_body()
    body["media_type"] = "VIDEO"
    assert (await photo_world.api.post(CONTENT_INIT, photo_world.t, body)).status == 400


@pytest.mark.parametrize("count", [0, 36])
async def test_photo_images_must_number_1_to_35(photo_world, count):
    images = [f"https://media.example.com/{i}.webp" for i in range(count)]
    r = await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body(images=images))
    assert r.status == 400 and r.code == "invalid_params"


async def test_photo_35_images_accepted(photo_world):
    images = [f"https://media.example.com/{i}.webp" for i in range(35)]
    assert (
        await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body(images=images, cover=34))
    ).code == "ok"


async def test_photo_cover_index_must_be_in_range(photo_world):
    r = await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body(cover=1))
    assert r.status == 400


async def test_photo_title_limit_90_and_description_limit_4000(photo_world):
    assert (await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body(title="t" * 91))).status == 400
    r = await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body(description="d" * 4001))
    assert r.status == 400
    r = await photo_world.api.post(
        CONTENT_INIT, photo_world.t, photo_body(title="t" * 90, description="d" * 4000)
    )
    assert r.code == "ok"


async def test_photo_images_must_be_verified(photo_world):
    r = await photo_world.api.post(
        CONTENT_INIT, photo_world.t, photo_body(images=["https://evil.com/a.webp"])
    )
    assert r.code == "url_ownership_unverified"


async def test_photo_media_upload_needs_app_version_31_8(photo_world):
    await photo_world.sb.control.update_creator("alice", app_version="31.7.2")
    r = await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body("MEDIA_UPLOAD"))
    assert r.status == 400 and r.code == "app_version_check_failed"


async def test_photo_unaudited_app_public_account_refused(photo_world):
    await photo_world.sb.control.update_app(photo_world.app.client_key, audited=False)
    r = await photo_world.api.post(CONTENT_INIT, photo_world.t, photo_body())
    assert r.code == "unaudited_client_can_only_post_to_private_accounts"


async def test_photo_privacy_level_mismatch(photo_world):
    r = await photo_world.api.post(
        CONTENT_INIT, photo_world.t, photo_body(privacy_level="FOLLOWER_OF_CREATOR")
    )
    assert r.status == 403 and r.code == "privacy_level_option_mismatch"
