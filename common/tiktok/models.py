"""What the client hands back: TikTok's answers as typed values, plus the consent-page URL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

USER_FIELDS_BASIC = ("open_id", "union_id", "avatar_url", "display_name")
USER_FIELDS_PROFILE = ("username", "bio_description", "profile_deep_link", "is_verified")


@dataclass(frozen=True)
class TokenGrant:
    """A token answer. ``refresh_expires_in`` is None when TikTok did not say (unknown, not zero)."""

    open_id: str
    scopes: tuple[str, ...]
    expires_in: int
    refresh_expires_in: int | None
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_type: str = "Bearer"  # noqa: S105 (a scheme name)


@dataclass(frozen=True)
class CreatorInfo:
    username: str
    nickname: str
    avatar_url: str
    privacy_level_options: tuple[str, ...]
    comment_disabled: bool
    duet_disabled: bool
    stitch_disabled: bool
    max_video_post_duration_sec: int


@dataclass(frozen=True)
class InitResult:
    publish_id: str
    upload_url: str | None = field(default=None, repr=False)  # carries an upload token
    log_id: str | None = None


@dataclass(frozen=True)
class PublishStatus:
    """A status answer; keys TikTok omits when they do not apply are None (or no post ids)."""

    status: str
    fail_reason: str | None
    post_ids: tuple[str, ...]
    uploaded_bytes: int | None
    downloaded_bytes: int | None
    log_id: str | None = None


@dataclass(frozen=True)
class PutResult:
    status: int
    content_range: str | None


def build_authorize_url(
    authorize_url: str,
    *,
    client_key: str,
    scopes: Sequence[str],
    redirect_uri: str,
    state: str,
    code_challenge: str | None = None,
) -> str:
    """The URL of TikTok's consent page (spec §2.1): comma-separated scopes, ``client_key``, hex PKCE."""
    params = {
        "client_key": client_key,
        "scope": ",".join(scopes),
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if code_challenge is not None:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    return f"{authorize_url}?{urlencode(params)}"
