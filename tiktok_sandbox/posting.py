"""Content Posting rules (§4, §9.2 steps 4-8): validate an init body and create the post.

Steps 1-3 (token, scope, rate limit) run in the web layer before these functions, because the
scope a photo init needs depends on its `post_mode`.
"""

from __future__ import annotations

from typing import Any

from . import rules
from .errors import ApiError
from .models import AccessToken, App, Creator, Post
from .store import Store

VIDEO_TITLE_MAX = 2200
PHOTO_TITLE_MAX = 90
PHOTO_DESCRIPTION_MAX = 4000
PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
VIDEO_BOOLS = (
    "disable_duet",
    "disable_comment",
    "disable_stitch",
    "brand_content_toggle",
    "brand_organic_toggle",
    "is_aigc",
)
PHOTO_BOOLS = ("disable_comment", "auto_add_music", "brand_content_toggle", "brand_organic_toggle")


class _Checks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def invalid(self, message: str) -> ApiError:
        return ApiError(400, self.store.config.invalid_param_code, message)

    def obj(self, value: Any, name: str, *, required: bool = True) -> dict[str, Any]:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.invalid(f"{name} is required and must be an object")
        return value

    def text(self, info: dict[str, Any], key: str, limit: int) -> None:
        value = info.get(key)
        if value is None:
            return
        if not isinstance(value, str):
            raise self.invalid(f"{key} must be a string")
        if not rules.is_unicode_text(value):
            raise self.invalid(f"The {key} is not valid Unicode text")
        if rules.utf16_len(value) > limit:
            raise self.invalid(f"The {key} exceeds {limit} characters")

    def bools(self, info: dict[str, Any], keys: tuple[str, ...]) -> None:
        for key in keys:
            if key in info and not isinstance(info[key], bool):
                raise self.invalid(f"{key} must be a boolean")
        if self.store.config.strict_brand_toggle and "brand_content_toggle" not in info:
            raise self.invalid("brand_content_toggle is required")

    def privacy(self, info: dict[str, Any]) -> str:
        """A missing privacy_level: 400 now, or "" so step 6 refuses it (see the config knob)."""
        level = info.get("privacy_level")
        if level is None and self.store.config.missing_privacy_level == "privacy_level_option_mismatch":
            return ""
        if not isinstance(level, str) or not level:
            raise self.invalid("privacy_level is required")
        return level

    def url(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.invalid(f"{name} is required for PULL_FROM_URL")
        if not rules.is_unicode_text(value) or not rules.parses_as_url(value):
            raise self.invalid(f"{name} is not a valid URL")
        return value

    def positive_int(self, info: dict[str, Any], key: str) -> int:
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.invalid(f"{key} is required and must be a positive integer")
        return value


def _verify_urls(store: Store, app: App, urls: list[str]) -> None:
    cfg = store.config
    for url in urls:
        if not rules.url_is_verified(
            url,
            app.seed.verified_domains,
            app.seed.verified_url_prefixes,
            allow_http=cfg.pull_allow_http,
            allow_ip=cfg.allow_ip_prefixes,
        ):
            raise ApiError(
                403,
                "url_ownership_unverified",
                "The URL is not under a verified domain or URL prefix of the app.",
            )


def _direct_post_gates(store: Store, app: App, creator: Creator, level: str) -> None:
    """§9.2 step 6, in the documented order."""
    now, window = store.now(), store.config.cap_window_s
    if not app.seed.direct_post_enabled:
        # [UNKNOWN] which code TikTok uses; the app is simply not allowed to use video.publish.
        raise ApiError(401, "scope_not_authorized", "Direct Post is not enabled for this app.")
    if level not in PRIVACY_LEVELS or level not in creator.privacy_options():
        raise ApiError(
            403, "privacy_level_option_mismatch", "The privacy level is not among the creator's options."
        )
    if not app.seed.audited:
        if not creator.seed.private:
            raise ApiError(
                403,
                "unaudited_client_can_only_post_to_private_accounts",
                "Unaudited clients can only post to a private account.",
            )
        active = {u for u, t in app.active_publishers.items() if t > now - window}
        if creator.username not in active and len(active) >= store.config.unaudited_max_users:
            raise ApiError(
                403, "reached_active_user_cap", "The app's daily quota of posting users is used up."
            )
    if creator.seed.banned:
        raise ApiError(403, "spam_risk_user_banned_from_posting", "The user is banned from posting.")
    recent = [t for t in creator.direct_posts if t > now - window]
    if len(recent) >= creator.seed.daily_post_cap:
        raise ApiError(403, "spam_risk_too_many_posts", "The user has reached the daily post cap.")
    cap = app.seed.active_creator_cap
    if app.seed.audited and cap is not None:
        active = {u for u, t in app.active_publishers.items() if t > now - window}
        if creator.username not in active and len(active) >= cap:
            raise ApiError(
                403, "reached_active_user_cap", "The app's daily quota of posting users is used up."
            )


def _upload_mode_gates(store: Store, creator: Creator, *, photo: bool) -> None:
    """§9.2 step 7."""
    if creator.seed.banned:
        raise ApiError(403, "spam_risk_user_banned_from_posting", "The user is banned from posting.")
    now = store.now()
    pending = [
        p
        for p in store.posts.values()
        if p.username == creator.username
        and p.pending_share
        and p.created_at > now - store.config.cap_window_s
    ]
    if len(pending) >= creator.seed.pending_share_cap:
        raise ApiError(
            403,
            "spam_risk_too_many_pending_share",
            "The user has too many pending shares in the last 24 hours.",
        )
    if photo and not rules.version_at_least(creator.seed.app_version, store.config.min_photo_app_version):
        raise ApiError(
            400, "app_version_check_failed", "The user's TikTok app version does not support this."
        )


def cannot_post_reason(store: Store, app: App, creator: Creator) -> ApiError | None:
    """The HTTP-200 "cannot post now" answers of creator_info (§4.1)."""
    try:
        _direct_post_gates(store, app, creator, creator.privacy_options()[0])
    except ApiError as e:
        if e.code in (
            "spam_risk_too_many_posts",
            "spam_risk_user_banned_from_posting",
            "reached_active_user_cap",
        ):
            return ApiError(200, e.code, e.message)
    return None


def creator_info(store: Store, at: AccessToken) -> dict[str, Any]:
    app, creator = store.apps[at.grant.client_key], store.creators[at.grant.username]
    blocked = cannot_post_reason(store, app, creator)
    if blocked is not None:
        raise blocked
    seed = creator.seed
    return {
        "creator_avatar_url": f"https://p16-sandbox.tiktokcdn.com/obj/avatar/{creator.username}.webp",
        "creator_username": creator.username,
        "creator_nickname": seed.nickname or creator.username,
        "privacy_level_options": creator.privacy_options(),
        "comment_disabled": seed.comment_disabled,
        "duet_disabled": seed.duet_disabled or seed.private,
        "stitch_disabled": seed.stitch_disabled or seed.private,
        "max_video_post_duration_sec": seed.max_video_post_duration_sec,
    }


def _effective(creator: Creator, info: dict[str, Any], keys: tuple[str, ...]) -> dict[str, bool]:
    seed = creator.seed
    forced = {
        "disable_comment": seed.comment_disabled,
        "disable_duet": seed.duet_disabled or seed.private,
        "disable_stitch": seed.stitch_disabled or seed.private,
    }
    return {k: bool(info.get(k, False)) or forced.get(k, False) for k in keys}


def init_video(store: Store, at: AccessToken, body: Any, *, direct: bool, base_url: str) -> dict[str, Any]:
    """Direct Post (`/video/init/`) or inbox (`/inbox/video/init/`) video init."""
    c = _Checks(store)
    body = c.obj(body, "body")
    app, creator = store.apps[at.grant.client_key], store.creators[at.grant.username]
    info = c.obj(body.get("post_info"), "post_info", required=direct)
    source_info = c.obj(body.get("source_info"), "source_info")
    source = source_info.get("source")
    if source not in ("FILE_UPLOAD", "PULL_FROM_URL"):
        raise c.invalid("source must be FILE_UPLOAD or PULL_FROM_URL")
    c.text(info, "title", VIDEO_TITLE_MAX)
    if direct:
        c.bools(info, VIDEO_BOOLS)
    level = c.privacy(info) if direct else None
    if "video_cover_timestamp_ms" in info and not isinstance(info["video_cover_timestamp_ms"], int):
        raise c.invalid("video_cover_timestamp_ms must be an integer")
    plan: tuple[int, int, int] | None = None
    if source == "FILE_UPLOAD":
        plan = (
            c.positive_int(source_info, "video_size"),
            c.positive_int(source_info, "chunk_size"),
            c.positive_int(source_info, "total_chunk_count"),
        )
        error = rules.chunk_plan_error(*plan)
        if error:
            raise c.invalid(error)
    else:
        _verify_urls(store, app, [c.url(source_info.get("video_url"), "video_url")])
    if level is not None:
        _direct_post_gates(store, app, creator, level)
    else:
        _upload_mode_gates(store, creator, photo=False)

    now = store.now()
    file_upload = source == "FILE_UPLOAD"
    if direct:
        prefix = "v_pub_file~v2-1" if file_upload else "v_pub_url~v2-1"
        creator.direct_posts.append(now)
        app.active_publishers[creator.username] = now
    else:
        prefix = "v_inbox_file~v2" if file_upload else "v_inbox_url~v2"
    post = store.new_post(
        publish_id=store.seq.publish_id(prefix),
        media_type="VIDEO",
        post_mode="DIRECT_POST" if direct else "MEDIA_UPLOAD",
        source=source,
        client_key=app.client_key,
        username=creator.username,
        open_id=at.grant.open_id,
        grant_id=at.grant.grant_id,
        created_at=now,
        post_info=info,
        source_info=source_info,
        requested_privacy=level,
        effective_privacy=(level if app.seed.audited else "SELF_ONLY") if direct else None,
        effective_options=_effective(creator, info, ("disable_comment", "disable_duet", "disable_stitch")),
        status="PROCESSING_UPLOAD" if file_upload else "PROCESSING_DOWNLOAD",
    )
    data: dict[str, Any] = {"publish_id": post.publish_id}
    if plan is not None:
        task = store.new_upload(post, *plan)
        data["upload_url"] = f"{base_url}/video/?upload_id={task.upload_id}&upload_token={task.upload_token}"
    return data


def photo_post_mode(body: Any) -> str | None:
    mode = body.get("post_mode") if isinstance(body, dict) else None
    return mode if mode in ("DIRECT_POST", "MEDIA_UPLOAD") else None


def init_photo(store: Store, at: AccessToken, body: Any) -> Post:
    c = _Checks(store)
    body = c.obj(body, "body")
    app, creator = store.apps[at.grant.client_key], store.creators[at.grant.username]
    if body.get("media_type") != "PHOTO":
        raise c.invalid("media_type must be PHOTO")
    mode = photo_post_mode(body)
    if mode is None:
        raise c.invalid("post_mode must be DIRECT_POST or MEDIA_UPLOAD")
    direct = mode == "DIRECT_POST"
    info = c.obj(body.get("post_info"), "post_info", required=direct)
    source_info = c.obj(body.get("source_info"), "source_info")
    if source_info.get("source") != "PULL_FROM_URL":
        raise c.invalid("source must be PULL_FROM_URL for photos")
    c.text(info, "title", PHOTO_TITLE_MAX)
    c.text(info, "description", PHOTO_DESCRIPTION_MAX)
    if direct:
        c.bools(info, PHOTO_BOOLS)
    level = c.privacy(info) if direct else None
    images = source_info.get("photo_images")
    if (
        not isinstance(images, list)
        or not 1 <= len(images) <= 35
        or not all(isinstance(u, str) for u in images)
    ):
        raise c.invalid("photo_images must hold 1 to 35 URLs")
    for image in images:
        c.url(image, "photo_images")
    cover = source_info.get("photo_cover_index")
    if isinstance(cover, bool) or not isinstance(cover, int) or not 0 <= cover < len(images):
        raise c.invalid("photo_cover_index is out of range")
    _verify_urls(store, app, images)
    if level is not None:
        _direct_post_gates(store, app, creator, level)
    else:
        _upload_mode_gates(store, creator, photo=True)
    now = store.now()
    if direct:
        creator.direct_posts.append(now)
        app.active_publishers[creator.username] = now
    return store.new_post(
        publish_id=store.seq.publish_id("p_pub_url~v2" if direct else "p_inbox_url~v2"),
        media_type="PHOTO",
        post_mode=mode,
        source="PULL_FROM_URL",
        client_key=app.client_key,
        username=creator.username,
        open_id=at.grant.open_id,
        grant_id=at.grant.grant_id,
        created_at=now,
        post_info=info,
        source_info=source_info,
        requested_privacy=level,
        effective_privacy=(level if app.seed.audited else "SELF_ONLY") if direct else None,
        effective_options=_effective(creator, info, ("disable_comment",)) if direct else {},
        status="PROCESSING_DOWNLOAD",
    )


def owned_post(store: Store, at: AccessToken, body: Any) -> Post:
    c = _Checks(store)
    publish_id = c.obj(body, "body").get("publish_id")
    if not isinstance(publish_id, str) or not publish_id:
        raise c.invalid("publish_id is required")
    post = store.posts.get(publish_id)
    if post is None:
        if store.config.unknown_publish_id == "documented":
            raise ApiError(400, "invalid_publish_id", "The publish_id does not exist.")
        raise c.invalid("invalid_publish_id")  # as observed: invalid_params, message the code
    if post.client_key != at.grant.client_key or post.open_id != at.grant.open_id:
        raise ApiError(
            400, "token_not_authorized_for_specified_publish_id", "The token does not own this publish_id."
        )
    store.advance(post)
    return post


def status(store: Store, post: Post) -> dict[str, Any]:
    """The status answer (§4.6); keys that do not apply are left out unless the knob keeps them."""
    always = store.config.status_optional_keys == "always"
    data: dict[str, Any] = {"status": post.status}
    if post.status == "FAILED":
        data["fail_reason"] = post.fail_reason
    if post.post_ids or always:
        data["publicaly_available_post_id"] = list(post.post_ids)
    if post.source == "FILE_UPLOAD":
        received = post.upload.received if post.upload else 0
        if received or always:
            data["uploaded_bytes"] = received
    elif post.downloaded_bytes or always:
        data["downloaded_bytes"] = post.downloaded_bytes
    return data


def cancel(store: Store, post: Post) -> None:
    if (
        post.source != "PULL_FROM_URL"
        or post.status != "PROCESSING_DOWNLOAD"
        or post.transfer_done_at is not None
    ):
        raise ApiError(400, "publish_not_cancellable", "The publish can no longer be cancelled.")
    store.fail(post, "publish_cancelled")
