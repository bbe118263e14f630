"""HTTP routes. Errors become HTTP in common.web.error_middleware (JSON) or here (HTML pages)."""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from aiohttp import web

from auth_service.domain import handoff
from auth_service.domain.account import Account
from auth_service.domain.oauth_state import STATE_TTL, ConnectRefused
from auth_service.domain.scopes import PublishMode
from auth_service.keys import ACCOUNTS, CONNECT, CONNECT_LIMITER, SETTINGS
from auth_service.web import pages
from common.errors import InvalidInput
from common.events import AccountStatus

log = structlog.get_logger(__name__)

BROWSER_COOKIE = "tt_connect"
SECURE_BROWSER_COOKIE = "__Host-tt_connect"
"""With an https redirect URI: ``__Host-`` makes the browser refuse it unless Secure, Path=/, no Domain,
so a sibling subdomain or a plain-http page cannot plant or overwrite it (#12.12)."""
MANAGEMENT_PREFIX = "/v1/accounts"


def browser_cookie(redirect_uri: str) -> tuple[str, str, bool]:
    """(name, path, secure) of the cookie binding a connect to its browser."""
    if redirect_uri.startswith("https://"):
        return SECURE_BROWSER_COOKIE, "/", True
    return BROWSER_COOKIE, "/v1/", False


def _handoff_key(request: web.Request) -> bytes:
    s = request.app[SETTINGS]
    return handoff.handoff_key(s.connect_handoff_key.get() or None, s.api_key.get())


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "open_id": account.open_id,
        "status": account.status.value,
        "scopes": list(account.scopes),
        "display_name": account.display_name,
        "avatar_url": account.avatar_url,
        "union_id": account.union_id,
        "token_version": account.token_version,
        "access_expires_at": _iso(account.access_expires_at),
        "refresh_expires_at": _iso(account.refresh_expires_at),
        "next_refresh_at": _iso(account.refresh_due_at),
        "last_refreshed_at": _iso(account.last_refreshed_at),
        "refresh_failures": account.refresh_failures,
        "last_error": account.last_error,
        "created_at": _iso(account.created_at),
        "updated_at": _iso(account.updated_at),
    }


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


async def connect(request: web.Request) -> web.StreamResponse:
    """Start TikTok's OAuth: remember a state for this browser and redirect to the consent page."""
    name, path, secure = browser_cookie(request.app[SETTINGS].oauth_redirect_uri)
    wait = request.app[CONNECT_LIMITER].take(request.remote or "-", time.monotonic())
    if wait > 0:  # #12.11: one address cannot fill oauth_states
        response = pages.error_page(
            "Too many sign-in attempts",
            f"too many connections were started from this address; try again in {math.ceil(wait)} seconds",
            "too_many_connects",
            429,
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        # Always a fresh nonce: one the browser sends may have been planted (login CSRF, #12.12).
        started = await request.app[CONNECT].start()
    except ConnectRefused as exc:
        return pages.error_page(exc.title, exc.message, exc.code, exc.http_status)
    response = _redirect(started.authorize_url)
    response.set_cookie(
        name,
        started.browser_nonce,
        max_age=int(STATE_TTL.total_seconds()),
        path=path,
        httponly=True,
        samesite="Lax",  # sent on the top-level redirect back from TikTok, not on cross-site posts
        secure=secure,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def oauth_callback(request: web.Request) -> web.StreamResponse:
    q = request.query
    name, path, _secure = browser_cookie(request.app[SETTINGS].oauth_redirect_uri)
    try:
        connected = await request.app[CONNECT].complete(
            state=q.get("state"),
            browser_nonce=request.cookies.get(name),
            code=q.get("code"),
            error=q.get("error"),
            error_description=q.get("error_description"),
            correlation_id=request.headers.get("X-Correlation-Id"),
        )
    except ConnectRefused as exc:
        response = pages.error_page(exc.title, exc.message, exc.code, exc.http_status)
        response.del_cookie(name, path=path)
        return response
    signed = handoff.sign(_handoff_key(request), connected.account_id, connected.mode.value, time.time())
    response = _redirect(_with_query(request.app[SETTINGS].connect_success_url, **signed))
    response.del_cookie(name, path=path)
    response.headers["Cache-Control"] = "no-store"
    # The callback URL carries the code: don't leak it to the success page as a Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def connected(request: web.Request) -> web.StreamResponse:
    """A plain landing page, usable as CONNECT_SUCCESS_URL when nothing better exists; it checks the
    hand-off's signature as an upstream app must."""
    try:
        done = handoff.verify(_handoff_key(request), request.query, time.time())
    except handoff.HandoffInvalid as exc:
        return pages.error_page("This link is not valid", exc.message, exc.code, 400)
    return pages.connected_page(done.account_id, drafts_only=done.mode == PublishMode.drafts_only.value)


async def list_accounts(request: web.Request) -> web.StreamResponse:
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in AccountStatus}:
        raise InvalidInput(f"status must be one of {', '.join(s.value for s in AccountStatus)}")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise InvalidInput("limit must be an integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
    accounts = await request.app[ACCOUNTS].list(status=status, after=request.query.get("after"), limit=limit)
    body: dict[str, Any] = {"accounts": [account_json(a) for a in accounts]}
    body["next_after"] = accounts[-1].id if len(accounts) == limit else None
    return web.json_response(body)


async def get_account(request: web.Request) -> web.StreamResponse:
    account = await request.app[ACCOUNTS].get(request.match_info["account_id"])
    return web.json_response(account_json(account))


async def token_status(request: web.Request) -> web.StreamResponse:
    status = await request.app[ACCOUNTS].token_status(request.match_info["account_id"])
    return web.json_response(
        {
            "account_id": status.account.id,
            "status": status.account.status.value,
            "token_version": status.account.token_version,
            "access_expires_at": _iso(status.account.access_expires_at),
            "refresh_expires_at": _iso(status.account.refresh_expires_at),
            "live": {
                "valid": status.valid,
                "checked_at": _iso(status.checked_at),
                "open_id_matches": status.open_id_matches,
                "error": status.error,
                "tiktok_log_id": status.tiktok_log_id,
            },
        }
    )


async def delete_account(request: web.Request) -> web.StreamResponse:
    result = await request.app[ACCOUNTS].disconnect(
        request.match_info["account_id"], correlation_id=request.headers.get("X-Correlation-Id")
    )
    if result.revoke_pending:
        return web.json_response(
            {
                "account_id": result.account_id,
                "status": AccountStatus.revoke_pending.value,
                "revoked": False,
                "revoke_error": result.revoke_error,
                "message": "disconnected here (posts stop); TikTok did not accept the revoke yet, "
                "it is retried in the background until the grant is revoked",
            },
            status=202,
        )
    return web.json_response(
        {
            "account_id": result.account_id,
            "status": AccountStatus.disconnected.value,
            "revoked": result.revoked,
            "revoke_error": result.revoke_error,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/connect", connect)
    app.router.add_get("/v1/oauth/callback", oauth_callback)
    app.router.add_get("/v1/connected", connected)
    app.router.add_get("/v1/accounts", list_accounts)
    app.router.add_get("/v1/accounts/{account_id}", get_account)
    app.router.add_get("/v1/accounts/{account_id}/token-status", token_status)
    app.router.add_delete("/v1/accounts/{account_id}", delete_account)
