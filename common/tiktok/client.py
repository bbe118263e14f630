"""The typed async client for TikTok's OAuth and Content Posting API.

One instance per service, over the service's one ``aiohttp.ClientSession``. Every call has a timeout;
every failure becomes a :class:`TikTokError` (TikTok said no, in whatever shape) or
:class:`TikTokTransportError` (no usable answer). Success is judged by the body, never by the HTTP
status alone (spec §2.8, §6.1); reading the answers is :mod:`common.tiktok.answers`, the upload PUT
is :mod:`common.tiktok.upload`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Mapping, Sequence
from typing import Any

import aiohttp

from common.tiktok import answers
from common.tiktok.errors import TikTokError, TikTokTransportError
from common.tiktok.guard import DEFAULT_UPLOAD_DOMAINS, check_redirect, check_upload_url, read_limited
from common.tiktok.models import (
    USER_FIELDS_BASIC,
    USER_FIELDS_PROFILE,
    CreatorInfo,
    InitResult,
    PublishStatus,
    PutResult,
    TokenGrant,
    build_authorize_url,
)
from common.tiktok.upload import UPLOAD_ENDPOINT, CallObserver, Observed, put_chunk

__all__ = [
    "UPLOAD_ENDPOINT",
    "USER_FIELDS_BASIC",
    "USER_FIELDS_PROFILE",
    "CallObserver",
    "CreatorInfo",
    "InitResult",
    "PublishStatus",
    "PutResult",
    "TikTokClient",
    "TokenGrant",
    "build_authorize_url",
]


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
        upload_domains: Sequence[str] = DEFAULT_UPLOAD_DOMAINS,
    ) -> None:
        self._session = session
        self._upload_domains = tuple(upload_domains)
        self._base = api_base.rstrip("/")
        self._client_key = client_key
        self._client_secret = client_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        # A chunk may take long to send; what must not stall is each read or write on the socket.
        self._upload_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10.0, sock_read=upload_read_timeout
        )
        self._write_stall_s = upload_read_timeout
        self._observed = Observed(observer)

    # ------------------------------------------------------------------ transport

    async def _request(
        self, method: str, path: str, *, endpoint: str, **kwargs: Any
    ) -> tuple[dict[str, Any], str | None]:
        """One call; the body of a success and its log id, or the typed error of a refusal."""
        url = self._base + path
        try:
            async with self._session.request(
                method, url, timeout=self._timeout, allow_redirects=False, **kwargs
            ) as response:
                check_redirect(response.status, response.headers, endpoint=endpoint)
                raw = await read_limited(response, endpoint=endpoint)
                status = response.status
                log_header = response.headers.get(answers.LOG_ID_HEADER) or None
        except aiohttp.ClientConnectorError as exc:
            raise TikTokTransportError(
                f"cannot connect: {exc.os_error}", maybe_applied=False, endpoint=endpoint
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TikTokTransportError(
                f"no answer: {type(exc).__name__}: {exc}", maybe_applied=True, endpoint=endpoint
            ) from exc
        body, text = answers.decode(raw)
        if body is None and text is None and status < 300:
            body = {}  # revoke's success may be an empty body (§2.7)
        if body is None and status < 300:
            # A success status without TikTok's JSON: we cannot tell whether it was applied.
            what = "an empty answer" if text is None else f"a non-JSON answer {text!r}"
            raise TikTokTransportError(
                f"HTTP {status} with {what} (log_id={log_header})", maybe_applied=True, endpoint=endpoint
            )
        error = answers.error_of(status, body, text=text, log_header=log_header, endpoint=endpoint, url=url)
        if error is not None:
            raise error
        assert body is not None  # noqa: S101 (error_of answers every body-less status)
        return body, answers.log_id_of(body, log_header)

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
        headers = {"Authorization": f"Bearer {token}"}
        kwargs: dict[str, Any] = {"headers": headers}
        if method == "POST":
            headers["Content-Type"] = "application/json; charset=UTF-8"
            kwargs["data"] = json.dumps(payload or {}).encode()
        if params:
            kwargs["params"] = params
        async with self._observed(path):
            body, log_id = await self._request(method, path, endpoint=endpoint, **kwargs)
        data = body.get("data")
        return (data if isinstance(data, dict) else {}), str(log_id or "")

    async def _oauth(
        self, path: str, form: dict[str, str], *, endpoint: str
    ) -> tuple[dict[str, Any], str | None]:
        form = {"client_key": self._client_key, "client_secret": self._client_secret, **form}
        async with self._observed(path):
            return await self._request(
                "POST",
                path,
                endpoint=endpoint,
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )

    # ------------------------------------------------------------------ OAuth (spec §2)

    async def exchange_code(
        self, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant:
        form = {"code": code, "grant_type": "authorization_code", "redirect_uri": redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        body, log_id = await self._oauth("/v2/oauth/token/", form, endpoint="oauth.token")
        return answers.token_grant(body, log_id=log_id, endpoint="oauth.token")

    async def refresh(self, refresh_token: str) -> TokenGrant:
        body, log_id = await self._oauth(
            "/v2/oauth/token/",
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            endpoint="oauth.refresh",
        )
        return answers.token_grant(body, log_id=log_id, endpoint="oauth.refresh")

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
        return answers.creator_info(data)

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
        if upload_url:
            upload_url = check_upload_url(
                str(upload_url), domains=self._upload_domains, api_base=self._base, endpoint=endpoint
            )
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
        return answers.publish_status(data, log_id)

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
        return await put_chunk(
            self._session,
            self._observed,
            upload_url,
            body,
            first=first,
            last=last,
            total=total,
            content_type=content_type,
            time_limit=self._upload_timeout,
            write_stall_s=self._write_stall_s,
        )
