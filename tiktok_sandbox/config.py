"""Sandbox settings: one frozen object, built from defaults, a JSON file and environment variables.

Every point the spec marks CONFLICT or UNKNOWN is a knob here (§9.5, §9.6). Defaults are the faithful
(strictest) choice unless a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MIB = 1024 * 1024

TOKEN_PRESETS: Mapping[str, tuple[int, int]] = {
    "classic": (86_400, 31_536_000),
    "2026": (7_200, 15_552_000),
}

ENDPOINT_CREATOR_INFO = "/v2/post/publish/creator_info/query/"
ENDPOINT_VIDEO_INIT = "/v2/post/publish/video/init/"
ENDPOINT_INBOX_INIT = "/v2/post/publish/inbox/video/init/"
ENDPOINT_CONTENT_INIT = "/v2/post/publish/content/init/"
ENDPOINT_STATUS = "/v2/post/publish/status/fetch/"
ENDPOINT_CANCEL = "/v2/post/publish/cancel/"
ENDPOINT_USER_INFO = "/v2/user/info/"
ENDPOINT_VIDEO_QUERY = "/v2/video/query/"
ENDPOINT_UPLOAD = "/video/"

DEFAULT_RATE_LIMITS: Mapping[str, int] = {
    ENDPOINT_VIDEO_INIT: 6,
    ENDPOINT_INBOX_INIT: 6,
    ENDPOINT_CONTENT_INIT: 6,
    ENDPOINT_CREATOR_INFO: 20,
    ENDPOINT_STATUS: 30,
    ENDPOINT_USER_INFO: 600,
    ENDPOINT_VIDEO_QUERY: 600,
}

ALL_SCOPES = (
    "user.info.basic",
    "user.info.profile",
    "user.info.stats",
    "video.list",
    "video.upload",
    "video.publish",
)


class ConfigError(ValueError):
    """A config value is missing or malformed."""


@dataclass(frozen=True)
class AppSeed:
    """A developer app registered in the sandbox (also the body of `POST /_sandbox/apps`)."""

    client_key: str
    client_secret: str = field(repr=False)
    name: str = "Sandbox app"
    app_type: Literal["web", "desktop"] = "web"
    redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ALL_SCOPES
    audited: bool = True
    verified_domains: tuple[str, ...] = ()
    verified_url_prefixes: tuple[str, ...] = ()
    webhook_url: str | None = None
    active_creator_cap: int | None = None
    direct_post_enabled: bool = True


@dataclass(frozen=True)
class CreatorSeed:
    """A TikTok user who can log in to apps (also the body of `POST /_sandbox/creators`)."""

    username: str
    nickname: str = ""
    private: bool = False
    banned: bool = False
    comment_disabled: bool = False
    duet_disabled: bool = False
    stitch_disabled: bool = False
    max_video_post_duration_sec: int = 600
    app_version: str = "35.1.0"
    daily_post_cap: int = 15
    pending_share_cap: int = 5
    privacy_level_options: tuple[str, ...] | None = None
    bio_description: str = ""
    is_verified: bool = False
    follower_count: int = 0
    following_count: int = 0
    likes_count: int = 0
    video_count: int = 0


@dataclass(frozen=True)
class SandboxConfig:
    """Every behaviour knob of the emulator. See docs/sandbox.md for the meaning of each."""

    # Where the sandbox is reachable; None means "from the request's Host header".
    public_base_url: str | None = None
    # Uploaded and pulled media; None means a fresh temp dir removed at shutdown.
    data_dir: str | None = None

    # OAuth (§2, §9.5)
    token_preset: Literal["classic", "2026"] = "classic"  # noqa: S105 (a preset name, not a secret)
    access_token_ttl_s: int | None = None
    refresh_token_ttl_s: int | None = None
    auth_code_ttl_s: int = 600
    refresh_rotation: Literal["always", "sometimes", "never"] = "always"
    refresh_rotation_probability: float = 0.5
    refresh_expiry_slides: bool = False
    old_access_token_after_refresh: Literal["valid_until_expiry", "revoked"] = "valid_until_expiry"  # noqa: S105
    oauth_error_status: int = 200
    pkce_encodings: Literal["hex", "hex+base64url"] = "hex"
    web_ignores_code_verifier: bool = True
    auto_approve: bool = False
    auto_approve_creator: str | None = None
    # TikTok requires https redirect URIs for web apps; local stacks redirect to http://127.0.0.1.
    allow_http_web_redirects: bool = False
    client_credentials_ttl_s: int = 7200

    # Envelope (§6, §9.6)
    invalid_param_code: Literal["invalid_params", "invalid_param"] = "invalid_params"
    errors_include_data: bool = True
    user_info_scope_error: Literal["scope_not_authorized", "scope_permission_missed"] = "scope_not_authorized"
    strict_brand_toggle: bool = False
    # §4.2/§6.2 (TikTok's error table: "privacy_level missing or not among the creator's options")
    # vs §9.2 step 4 (400 invalid_params). Default: the documented table; see docs/sandbox.md.
    missing_privacy_level: Literal["privacy_level_option_mismatch", "invalid_params"] = (
        "privacy_level_option_mismatch"
    )
    # An unknown publish_id: observed as invalid_params / "invalid_publish_id"; documented as
    # 400 invalid_publish_id (§4.6).
    unknown_publish_id: Literal["observed", "documented"] = "observed"
    # Status answers omit keys that do not apply (publicaly_available_post_id before there is a post
    # id, uploaded_bytes / downloaded_bytes before any byte moved); "always" keeps them.
    status_optional_keys: Literal["when_applicable", "always"] = "when_applicable"
    # Whether a token answer carries refresh_expires_in (some answers have been seen without it).
    token_includes_refresh_expires_in: bool = True

    # Limits (§7)
    rate_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    rate_window_s: float = 60.0
    rate_window_kind: Literal["sliding", "fixed"] = "sliding"
    cap_window_s: float = 86_400.0
    unaudited_max_users: int = 5
    min_photo_app_version: str = "31.8"

    # Upload and processing (§5, §9.3, §9.4)
    upload_url_ttl_s: float = 3600.0
    upload_expired_fail_reason: str = "internal"
    content_range_form: Literal["last_index", "count"] = "last_index"
    # PUT answers: TikTok documents no body (§5.2, §12); "json" adds {"error":{...}} bodies.
    upload_response_body: Literal["none", "json"] = "none"
    # The PUT Content-Type rule is an assumption (§9.3 step 3): "video" accepts only
    # video/mp4|quicktime|webm; "any" accepts any type (e.g. application/octet-stream).
    upload_content_types: Literal["video", "any"] = "video"
    processing_min_s: float = 2.0
    processing_s_per_512mib: float = 30.0
    moderation_delay_s: float = 5.0
    # Privacy levels whose posts get a publicaly_available_post_id after moderation.
    public_privacy_levels: tuple[str, ...] = ("PUBLIC_TO_EVERYONE",)
    read_chunk_bytes: int = 256 * 1024
    # False: received video chunks are hashed and counted but not written to data_dir (a benchmark's
    # receiver, like the plain copy's sink); the control API still reports size and sha256.
    keep_media: bool = True

    # PULL_FROM_URL (§5.3)
    pull_allow_http: bool = False
    allow_ip_prefixes: bool = False
    pull_timeout_s: float = 3600.0
    pull_max_video_bytes: int = 4 * 1024 * MIB
    pull_max_photo_bytes: int = 20 * 1000 * 1000

    # Webhooks (§8)
    webhook_url: str | None = None
    webhook_retry_schedule_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    webhook_timeout_s: float = 5.0
    direct_post_publish_type: str = "DIRECT_POST"

    # Seeds so `python -m tiktok_sandbox` starts ready to use.
    apps: tuple[AppSeed, ...] = ()
    creators: tuple[CreatorSeed, ...] = ()

    @property
    def access_ttl(self) -> int:
        return self.access_token_ttl_s or TOKEN_PRESETS[self.token_preset][0]

    @property
    def refresh_ttl(self) -> int:
        return self.refresh_token_ttl_s or TOKEN_PRESETS[self.token_preset][1]

    def rate_limit_for(self, endpoint: str) -> int | None:
        return self.rate_limits.get(endpoint)


# ---- building from JSON / environment -------------------------------------------------------------


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn JSON (or env-string) data into the annotated field type, failing fast with the field name."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is None and not dataclasses.is_dataclass(tp):
        return _scalar(tp, value)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return None if value is None else _coerce(non_none[0], value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {args}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list")
        return tuple(_coerce(args[0], v, where) for v in value)
    if origin in (Mapping, dict) or tp is Mapping:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object")
        return {str(k): _coerce(args[1], v, where) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object")
        return from_mapping(tp, value)
    return value


def _scalar(tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if tp is int:
        return int(value)
    if tp is float:
        return float(value)
    if tp is str:
        return str(value)
    return value


T = typing.TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build a config dataclass from a JSON object; unknown keys are an error (typos must not pass)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{cls.__name__}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from e


ENV_PREFIX = "TIKTOK_SANDBOX_"


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> SandboxConfig:
    """Defaults, then a JSON file (`path` or `$TIKTOK_SANDBOX_CONFIG`), then `TIKTOK_SANDBOX_<KNOB>`."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    file_path = path or env.get(ENV_PREFIX + "CONFIG")
    if file_path:
        loaded = json.loads(Path(file_path).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file_path}: expected a JSON object")
        data.update(loaded)
    for f in dataclasses.fields(SandboxConfig):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            data[f.name] = json.loads(raw) if f.name in ("apps", "creators") else raw
    return from_mapping(SandboxConfig, data)
