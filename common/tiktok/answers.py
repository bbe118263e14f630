"""Reading TikTok's answers, as pure functions: every error shape, token grants, status bodies.

TikTok answers errors in three shapes, at any HTTP status (spec §2.8, §6.1):

- wrapped v2: ``{"data": {}, "error": {"code", "message", "log_id"}}``
- flat v2: ``{"code", "message", "log_id"}`` (captured at 400 and 401, and possible at 200)
- flat OAuth: ``{"error", "error_description", "log_id"}``

and some refusals with no body at all, where only the ``x-tt-logid`` header identifies the answer.
Each becomes the same :class:`TikTokError`; an answer that carries no code keeps ``tiktok_code``
empty rather than inventing one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from common.tiktok.errors import TikTokConfigError, TikTokError
from common.tiktok.models import CreatorInfo, PublishStatus, TokenGrant

LOG_ID_HEADER = "x-tt-logid"
TEXT_EXCERPT = 120


def decode(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The body as a JSON object, or None and a short excerpt of what it was instead."""
    if not raw.strip():
        return None, None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body, None
    text = raw[:TEXT_EXCERPT].decode("utf-8", "replace").strip()
    return None, text


def _str(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def error_of(
    status: int,
    body: Mapping[str, Any] | None,
    *,
    text: str | None = None,
    log_header: str | None = None,
    endpoint: str = "",
    url: str = "",
) -> TikTokError | None:
    """The error this answer carries, or None when it is a success. Pure: no I/O.

    ``body`` is the decoded JSON object (None when the body was empty or not a JSON object;
    ``text`` then holds an excerpt of a non-empty body).
    """
    if body is None:
        if status == 404 and text is not None:
            # TikTok's gateway answers a wrong path (e.g. no trailing slash) with a text 404:
            # a configuration mistake that no retry can fix.
            return TikTokConfigError(
                f"HTTP 404 with a non-JSON answer ({text!r}) from {url}: check the API base URL and "
                "path (TikTok's paths end with '/')",
                log_id=log_header,
                status=status,
                endpoint=endpoint,
                url=url,
            )
        what = "empty answer" if text is None else f"non-JSON answer {text!r}"
        return TikTokError("", f"{what}, HTTP {status}", log_id=log_header, status=status, endpoint=endpoint)

    code: str | None
    message: str | None
    log_id: str | None
    wrapped = body.get("error")
    if isinstance(wrapped, Mapping):  # wrapped v2
        code = _str(wrapped.get("code"))
        message = _str(wrapped.get("message"))
        log_id = _str(wrapped.get("log_id")) or _str(wrapped.get("logid"))
    elif isinstance(wrapped, str) and wrapped:  # flat OAuth
        code = wrapped
        message = _str(body.get("error_description")) or _str(body.get("message"))
        log_id = _str(body.get("log_id"))
    elif _str(body.get("code")) is not None and "data" not in body:  # flat v2
        code = _str(body.get("code"))
        message = _str(body.get("message"))
        log_id = _str(body.get("log_id")) or _str(body.get("logid"))
    else:
        code, message, log_id = None, None, _str(body.get("log_id"))
    log_id = log_id or log_header
    if code is not None and code != "ok":
        return TikTokError(code, message or "", log_id=log_id, status=status, endpoint=endpoint)
    if status >= 400:
        said = "error code ok" if code == "ok" else "no error code"
        return TikTokError("", f"HTTP {status} with {said}", log_id=log_id, status=status, endpoint=endpoint)
    return None


def log_id_of(body: Mapping[str, Any], log_header: str | None) -> str | None:
    wrapped = body.get("error")
    if isinstance(wrapped, Mapping):
        return _str(wrapped.get("log_id")) or _str(wrapped.get("logid")) or log_header
    return _str(body.get("log_id")) or log_header


def as_int(value: object) -> int | None:
    """A count TikTok may send as a number or a string (§4.6); None when absent or unreadable."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def token_grant(body: Mapping[str, Any], *, log_id: str | None, endpoint: str) -> TokenGrant:
    """A token answer; success means an access_token (§2.8). A missing lifetime stays None."""
    if not body.get("access_token") or not body.get("refresh_token"):
        raise TikTokError(
            "invalid_response",
            "the token response has no access_token and refresh_token",
            log_id=log_id,
            status=200,
            endpoint=endpoint,
        )
    return TokenGrant(
        open_id=body["open_id"] if isinstance(body.get("open_id"), str) else "",  # null: none (#12.14)
        scopes=tuple(s for s in str(body.get("scope", "")).split(",") if s),
        expires_in=as_int(body.get("expires_in")) or 0,
        refresh_expires_in=as_int(body.get("refresh_expires_in")),
        access_token=str(body["access_token"]),
        refresh_token=str(body["refresh_token"]),
        token_type=str(body.get("token_type", "Bearer")),
    )


def creator_info(data: Mapping[str, Any]) -> CreatorInfo:
    return CreatorInfo(
        username=str(data.get("creator_username", "")),
        nickname=str(data.get("creator_nickname", "")),
        avatar_url=str(data.get("creator_avatar_url", "")),
        privacy_level_options=tuple(data.get("privacy_level_options") or ()),
        comment_disabled=bool(data.get("comment_disabled")),
        duet_disabled=bool(data.get("duet_disabled")),
        stitch_disabled=bool(data.get("stitch_disabled")),
        max_video_post_duration_sec=as_int(data.get("max_video_post_duration_sec")) or 600,
    )


def post_ids(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Post ids exceed 2**53: kept as strings whatever JSON type they came in (§4.6).

    Both spellings are read; TikTok's own is ``publicaly``.
    """
    ids = data.get("publicaly_available_post_id")
    if ids is None:
        ids = data.get("publicly_available_post_id")
    if isinstance(ids, str | int) and not isinstance(ids, bool):
        ids = [ids]
    if not isinstance(ids, list):
        return ()
    return tuple(str(i) for i in ids if isinstance(i, str | int) and not isinstance(i, bool))


def publish_status(data: Mapping[str, Any], log_id: str | None) -> PublishStatus:
    """A status answer; every key but ``status`` may be absent (§4.6)."""
    return PublishStatus(
        status=str(data.get("status", "")),
        fail_reason=_str(data.get("fail_reason")),
        post_ids=post_ids(data),
        uploaded_bytes=as_int(data.get("uploaded_bytes")),
        downloaded_bytes=as_int(data.get("downloaded_bytes")),
        log_id=log_id,
    )
