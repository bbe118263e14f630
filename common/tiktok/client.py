"""The typed async client for TikTok's OAuth and Content Posting API.

One instance per service, over the service's one ``aiohttp.ClientSession``. Every call has a timeout;
every failure becomes a :class:`TikTokError` (TikTok said no) or :class:`TikTokTransportError` (no
usable answer). Success is judged by the body, never by the HTTP status alone (spec §2.8, §6.1).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from common.tiktok.errors import TikTokError, TikTokTransportError

CallObserver = Callable[[str, str, float], None]
"""Told of every call: the endpoint's path, the result (``ok``, TikTok's error code, ``unreachable``
or an HTTP status for upload PUTs) and the seconds it took."""

UPLOAD_ENDPOINT = "upload"

USER_FIELDS_BASIC = ("open_id", "union_id", "avatar_url", "display_name")
USER_FIELDS_PROFILE = ("username", "bio_description", "profile_deep_link", "is_verified")


@dataclass(frozen=True)
class TokenGrant:
    open_id: str
    scopes: tuple[str, ...]
    expires_in: int
    refresh_expires_in: int
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
    status: str
    fail_reason: str | None
    post_ids: tuple[str, ...]
    uploaded_bytes: int | None
    downloaded_bytes: int | None
    log_id: str | None = None


@dataclass
class _Outcome:
    result: str = "ok"


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


def _as_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


class TikTokClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_base: str,
        *,
        client_key: str,
        client_secret: str,
        timeout: float = 30.0,
        upload_read_timeout: float = 120.0,
        observer: CallObserver | None = None,
    ) -> None:
        self._session = session
        self._base = api_base.rstrip("/")
        self._client_key = client_key
        self._client_secret = client_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        # A chunk may take long to send; what must not stall is each read or write on the socket.
        self._upload_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10.0, sock_read=upload_read_timeout
        )
        self._write_stall_s = upload_read_timeout
        self._observer = observer

    @asynccontextmanager
    async def _observed(self, endpoint: str) -> AsyncIterator[_Outcome]:
        """Tell the observer how the call went (a TikTok code, ``unreachable``, ``ok``) and how long."""
        outcome = _Outcome()
        started = time.perf_counter()
        try:
            yield outcome
        except TikTokError as exc:
            outcome.result = exc.tiktok_code
            raise
        except TikTokTransportError:
            outcome.result = "unreachable"
            raise
        except BaseException:
            outcome.result = "cancelled"
            raise
        finally:
            if self._observer is not None:
                self._observer(endpoint, outcome.result, time.perf_counter() - started)

    # ------------------------------------------------------------------ transport

    async def _request(
        self, method: str, path: str, *, endpoint: str, time_limit: aiohttp.ClientTimeout, **kwargs: Any
    ) -> tuple[int, Mapping[str, Any]]:
        url = self._base + path
        try:
            async with self._session.request(method, url, timeout=time_limit, **kwargs) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            raise TikTokTransportError(
                f"cannot connect: {exc.os_error}", maybe_applied=False, endpoint=endpoint
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TikTokTransportError(
                f"no answer: {type(exc).__name__}: {exc}", maybe_applied=True, endpoint=endpoint
            ) from exc
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if status >= 500 or status == 429:
                raise TikTokError(
                    "internal_error" if status >= 500 else "rate_limit_exceeded",
                    f"HTTP {status} without a JSON body",
                    status=status,
                    endpoint=endpoint,
                )
            raise TikTokTransportError(
                f"HTTP {status} with a body that is not a JSON object", maybe_applied=True, endpoint=endpoint
            )
        return status, body

    async def _api(
        self,
        path: str,
        token: str,
        *,
        endpoint: str,
        payload: Mapping[str, Any] | None = None,
        method: str = "POST",
        params: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], str]:
        async with self._observed(path):
            return await self._api_call(
                path, token, endpoint=endpoint, payload=payload, method=method, params=params
            )

    async def _api_call(
        self,
        path: str,
        token: str,
        *,
        endpoint: str,
        payload: Mapping[str, Any] | None = None,
        method: str = "POST",
        params: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], str]:
        headers = {"Authorization": f"Bearer {token}"}
        kwargs: dict[str, Any] = {"headers": headers}
        if method == "POST":
            headers["Content-Type"] = "application/json; charset=UTF-8"
            kwargs["data"] = json.dumps(payload or {}).encode()
        if params:
            kwargs["params"] = params
        status, body = await self._request(
            method, path, endpoint=endpoint, time_limit=self._timeout, **kwargs
        )
        raw_error = body.get("error")
        error: Mapping[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        code = str(error.get("code") or ("ok" if status == 200 else "internal_error"))
        log_id = error.get("log_id") or error.get("logid")
        if code != "ok":
            raise TikTokError(
                code, str(error.get("message") or ""), log_id=log_id, status=status, endpoint=endpoint
            )
        if status >= 400:
            raise TikTokError(
                "internal_error",
                f"HTTP {status} with error.code ok",
                log_id=log_id,
                status=status,
                endpoint=endpoint,
            )
        data = body.get("data")
        return (data if isinstance(data, dict) else {}), str(log_id or "")

    async def _oauth(self, path: str, form: dict[str, str], *, endpoint: str) -> Mapping[str, Any]:
        async with self._observed(path):
            return await self._oauth_call(path, form, endpoint=endpoint)

    async def _oauth_call(self, path: str, form: dict[str, str], *, endpoint: str) -> Mapping[str, Any]:
        form = {"client_key": self._client_key, "client_secret": self._client_secret, **form}
        status, body = await self._request(
            "POST",
            path,
            endpoint=endpoint,
            time_limit=self._timeout,
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if "error" in body and body.get("error") and not isinstance(body.get("error"), dict):
            raise TikTokError(
                str(body["error"]),
                str(body.get("error_description") or ""),
                log_id=body.get("log_id"),
                status=status,
                endpoint=endpoint,
            )
        if status >= 400:
            raise TikTokError(
                "server_error" if status >= 500 else "invalid_request",
                f"HTTP {status}",
                log_id=body.get("log_id"),
                status=status,
                endpoint=endpoint,
            )
        return body

    # ------------------------------------------------------------------ OAuth (spec §2)

    def _grant(self, body: Mapping[str, Any], endpoint: str) -> TokenGrant:
        # The token endpoint may answer 200 with an error body; success means an access_token (§2.8).
        if not body.get("access_token") or not body.get("refresh_token"):
            raise TikTokError(
                "invalid_response",
                "the token response has no access_token",
                log_id=body.get("log_id"),
                status=200,
                endpoint=endpoint,
            )
        return TokenGrant(
            open_id=body["open_id"] if isinstance(body.get("open_id"), str) else "",  # null: none
            scopes=tuple(s for s in str(body.get("scope", "")).split(",") if s),
            expires_in=int(body.get("expires_in", 0)),
            refresh_expires_in=int(body.get("refresh_expires_in", 0)),
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            token_type=str(body.get("token_type", "Bearer")),
        )

    async def exchange_code(
        self, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant:
        form = {"code": code, "grant_type": "authorization_code", "redirect_uri": redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        body = await self._oauth("/v2/oauth/token/", form, endpoint="oauth.token")
        return self._grant(body, "oauth.token")

    async def refresh(self, refresh_token: str) -> TokenGrant:
        body = await self._oauth(
            "/v2/oauth/token/",
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            endpoint="oauth.refresh",
        )
        return self._grant(body, "oauth.refresh")

    async def revoke(self, access_token: str) -> None:
        await self._oauth("/v2/oauth/revoke/", {"token": access_token}, endpoint="oauth.revoke")

    async def user_info(self, access_token: str, fields: Sequence[str] = USER_FIELDS_BASIC) -> dict[str, Any]:
        data, _ = await self._api(
            "/v2/user/info/",
            access_token,
            endpoint="user.info",
            method="GET",
            params={"fields": ",".join(fields)},
        )
        user = data.get("user")
        return user if isinstance(user, dict) else {}

    # ------------------------------------------------------------------ Content Posting (spec §4)

    async def creator_info(self, access_token: str) -> CreatorInfo:
        data, _ = await self._api(
            "/v2/post/publish/creator_info/query/", access_token, endpoint="creator_info", payload={}
        )
        return CreatorInfo(
            username=str(data.get("creator_username", "")),
            nickname=str(data.get("creator_nickname", "")),
            avatar_url=str(data.get("creator_avatar_url", "")),
            privacy_level_options=tuple(data.get("privacy_level_options") or ()),
            comment_disabled=bool(data.get("comment_disabled")),
            duet_disabled=bool(data.get("duet_disabled")),
            stitch_disabled=bool(data.get("stitch_disabled")),
            max_video_post_duration_sec=int(data.get("max_video_post_duration_sec") or 600),
        )

    def _init_result(self, data: Mapping[str, Any], log_id: str, endpoint: str) -> InitResult:
        publish_id = data.get("publish_id")
        if not publish_id:
            raise TikTokError(
                "invalid_response",
                "init answered ok without a publish_id",
                log_id=log_id,
                status=200,
                endpoint=endpoint,
            )
        upload_url = data.get("upload_url")
        return InitResult(str(publish_id), str(upload_url) if upload_url else None, log_id)

    async def init_direct_video(
        self, access_token: str, post_info: Mapping[str, Any], source_info: Mapping[str, Any]
    ) -> InitResult:
        data, log_id = await self._api(
            "/v2/post/publish/video/init/",
            access_token,
            endpoint="video.init",
            payload={"post_info": post_info, "source_info": source_info},
        )
        return self._init_result(data, log_id, "video.init")

    async def init_inbox_video(self, access_token: str, source_info: Mapping[str, Any]) -> InitResult:
        data, log_id = await self._api(
            "/v2/post/publish/inbox/video/init/",
            access_token,
            endpoint="inbox.init",
            payload={"source_info": source_info},
        )
        return self._init_result(data, log_id, "inbox.init")

    async def init_photo(
        self, access_token: str, post_mode: str, post_info: Mapping[str, Any], source_info: Mapping[str, Any]
    ) -> InitResult:
        payload = {
            "media_type": "PHOTO",
            "post_mode": post_mode,
            "post_info": post_info,
            "source_info": source_info,
        }
        data, log_id = await self._api(
            "/v2/post/publish/content/init/", access_token, endpoint="content.init", payload=payload
        )
        return self._init_result(data, log_id, "content.init")

    async def fetch_status(self, access_token: str, publish_id: str) -> PublishStatus:
        data, log_id = await self._api(
            "/v2/post/publish/status/fetch/",
            access_token,
            endpoint="status.fetch",
            payload={"publish_id": publish_id},
        )
        # Post ids exceed 2**53: keep them as strings whatever JSON type they came in (§4.6).
        ids = data.get("publicaly_available_post_id") or data.get("publicly_available_post_id") or []
        return PublishStatus(
            status=str(data.get("status", "")),
            fail_reason=data.get("fail_reason") or None,
            post_ids=tuple(str(i) for i in ids),
            uploaded_bytes=_as_int(data.get("uploaded_bytes")),
            downloaded_bytes=_as_int(data.get("downloaded_bytes")),
            log_id=log_id,
        )

    async def cancel(self, access_token: str, publish_id: str) -> None:
        await self._api(
            "/v2/post/publish/cancel/", access_token, endpoint="cancel", payload={"publish_id": publish_id}
        )

    async def put_chunk(
        self,
        upload_url: str,
        body: AsyncIterable[bytes],
        *,
        first: int,
        last: int,
        total: int,
        content_type: str = "video/mp4",
    ) -> PutResult:
        """PUT one chunk, streamed from ``body``; returns the status whatever it is (§5.2).

        The caller owns the state machine (201 done, 206 next, 416 resync, 403 re-init, 5xx retry).
        """
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{total}",
        }
        loop = asyncio.get_running_loop()
        try:
            async with (
                self._observed(UPLOAD_ENDPOINT) as outcome,
                asyncio.timeout(loop.time() + self._write_stall_s) as watchdog,
            ):

                async def watched() -> AsyncIterator[bytes]:
                    # aiohttp's sock_read covers only the answer; nothing bounds the writes, so a
                    # peer that accepts the connection and stops reading would hold this PUT (and
                    # its worker) forever. Each piece taken means the one before was written.
                    async for piece in body:
                        watchdog.reschedule(loop.time() + self._write_stall_s)
                        yield piece
                    watchdog.reschedule(None)  # all written: sock_read bounds the wait for the answer

                async with self._session.put(
                    upload_url, data=watched(), headers=headers, timeout=self._upload_timeout
                ) as response:
                    await response.read()
                    outcome.result = str(response.status)
                    return PutResult(response.status, response.headers.get("Content-Range"))
        except aiohttp.ClientConnectorError as exc:
            raise TikTokTransportError(
                f"cannot connect: {exc.os_error}", maybe_applied=False, endpoint="upload"
            ) from exc
        except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise TikTokTransportError(
                f"upload interrupted: {type(exc).__name__}", maybe_applied=True, endpoint="upload"
            ) from exc
