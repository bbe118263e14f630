"""Login Kit routes (§2, §3): authorize + consent page, token, revoke, user info."""

from __future__ import annotations

import html
import secrets
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .. import rules
from ..config import ENDPOINT_USER_INFO
from ..errors import ApiError, OAuthError
from ..keys import STORE
from ..models import App, PendingAuthorization
from ..store import Store
from .common import ok
from .display import VIDEOS

FIELD_SCOPES = {
    "open_id": "user.info.basic",
    "union_id": "user.info.basic",
    "avatar_url": "user.info.basic",
    "avatar_url_100": "user.info.basic",
    "avatar_large_url": "user.info.basic",
    "display_name": "user.info.basic",
    "bio_description": "user.info.profile",
    "profile_deep_link": "user.info.profile",
    "is_verified": "user.info.profile",
    "username": "user.info.profile",
    "follower_count": "user.info.stats",
    "following_count": "user.info.stats",
    "likes_count": "user.info.stats",
    "video_count": "user.info.stats",
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}
button{{padding:.6rem 1.4rem;margin:.3rem}}
#authorize{{background:#fe2c55;color:#fff;border:0}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body), status=status, content_type="text/html"
    )


def _redirect(uri: str, params: dict[str, str]) -> web.HTTPFound:
    sep = "&" if "?" in uri else "?"
    # An absent `state` stays absent; every other value is echoed unchanged.
    return web.HTTPFound(uri + sep + urlencode({k: v for k, v in params.items() if v}))


def _consent_page(
    store: Store, app: App, pending: PendingAuthorization, preselect: str | None
) -> web.Response:
    creators = list(store.creators)
    if not creators:
        return _page("Sandbox", "<p>No creators exist yet: create one with POST /_sandbox/creators.</p>", 409)
    options = "".join(
        f'<option value="{html.escape(u)}"{" selected" if u == preselect else ""}>{html.escape(u)}</option>'
        for u in creators
    )
    scopes = "".join(
        f'<li><label><input type="checkbox" name="scope" value="{html.escape(s)}" checked> {html.escape(s)}'
        "</label></li>"
        for s in pending.scopes
    )
    body = (
        f"<p><b>{html.escape(app.seed.name)}</b> wants to access your TikTok account.</p>"
        '<form method="post" action="/v2/auth/authorize/">'
        f'<input type="hidden" name="request_id" value="{html.escape(pending.request_id)}">'
        f'<p><label>Log in as <select name="creator" id="creator">{options}</select></label></p>'
        f"<ul>{scopes}</ul>"
        '<button type="submit" name="decision" value="authorize" id="authorize">Authorize</button>'
        '<button type="submit" name="decision" value="deny" id="deny">Deny</button>'
        "</form>"
    )
    return _page("Authorize app", body)


async def authorize(request: web.Request) -> web.StreamResponse:
    """GET /v2/auth/authorize/: validate (§9.1), then consent page or auto-approve."""
    store = request.app[STORE]
    q = request.query
    app = store.apps.get(q.get("client_key", ""))
    if app is None:
        return _page("Error", "<p>client_key is invalid.</p>", 400)
    redirect_uri = q.get("redirect_uri", "")
    if not any(rules.redirect_uri_matches(r, redirect_uri) for r in app.seed.redirect_uris):
        return _page("Error", "<p>redirect_uri is not registered for this app.</p>", 400)
    state = q.get("state", "")

    def refuse(error: str, description: str) -> web.HTTPFound:
        return _redirect(redirect_uri, {"error": error, "error_description": description, "state": state})

    if q.get("response_type") != "code":
        raise refuse("unsupported_response_type", "response_type must be code.")
    scopes = tuple(s for s in q.get("scope", "").split(",") if s)
    if not scopes or not set(scopes) <= set(app.seed.scopes):
        raise refuse("invalid_scope", "The scope is invalid or not approved for this app.")
    challenge = q.get("code_challenge")
    if app.seed.app_type == "desktop":
        if not challenge or q.get("code_challenge_method") != "S256":
            raise refuse("invalid_request", "code_challenge and code_challenge_method=S256 are required.")
    elif store.config.web_ignores_code_verifier:
        challenge = None
    pending = PendingAuthorization(
        request_id=secrets.token_urlsafe(16),
        client_key=app.client_key,
        scopes=scopes,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=challenge,
        expires_at=store.now() + store.config.auth_code_ttl_s,
    )
    preselect = q.get("sandbox_creator") or store.config.auto_approve_creator
    if store.config.auto_approve:
        username = preselect or next(iter(store.creators), None)
        if username is None or username not in store.creators:
            return _page("Sandbox", "<p>auto_approve needs an existing creator.</p>", 409)
        code = store.issue_code(pending, username, scopes)
        raise _redirect(redirect_uri, {"code": code, "scopes": ",".join(scopes), "state": state})
    store.pending_auth[pending.request_id] = pending
    return _consent_page(store, app, pending, preselect)


async def consent(request: web.Request) -> web.StreamResponse:
    """POST /v2/auth/authorize/: the consent form's Authorize / Deny buttons."""
    store = request.app[STORE]
    try:
        form = await request.post()
    except ValueError:
        return _page("Error", "<p>The form is malformed.</p>", 400)
    pending = store.pending_auth.pop(str(form.get("request_id", "")), None)
    if pending is None or store.now() > pending.expires_at:
        return _page("Error", "<p>This authorization request expired. Start again.</p>", 400)
    chosen = tuple(s for s in pending.scopes if s in {str(v) for v in form.getall("scope", [])})
    username = str(form.get("creator", ""))
    if form.get("decision") != "authorize" or not chosen:
        raise _redirect(
            pending.redirect_uri,
            {
                "error": "access_denied",
                "error_description": "The user denied the request.",
                "state": pending.state,
            },
        )
    if username not in store.creators:
        return _page("Error", "<p>Unknown creator.</p>", 400)
    code = store.issue_code(pending, username, chosen)
    raise _redirect(pending.redirect_uri, {"code": code, "scopes": ",".join(chosen), "state": pending.state})


async def _form(request: web.Request) -> dict[str, str]:
    try:
        form = await request.post()
    except ValueError:  # a malformed multipart body, or one that cannot be decoded
        raise OAuthError("invalid_request", "The request parameters are malformed.") from None
    return {k: str(v) for k, v in form.items()}


async def token(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    form = await _form(request)
    grant_type = form.get("grant_type")
    result: dict[str, Any]
    if grant_type == "authorization_code":
        result = store.exchange_code(form)
    elif grant_type == "refresh_token":
        result = store.refresh(form)
    elif grant_type == "client_credentials":
        result = store.client_credentials(form)
    elif not grant_type:
        raise OAuthError("invalid_request", "The request parameters are malformed.")
    else:
        raise OAuthError("unsupported_grant_type", "The grant type is not supported.")
    return web.json_response(result)


async def revoke(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    store.revoke(await _form(request))
    return web.json_response({})


async def user_info(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    at = store.authenticate(request.headers.get("Authorization"))
    store.require_scope(at, "user.info.basic", "user.info.profile", "user.info.stats")
    store.rate_limit(at, ENDPOINT_USER_INFO)
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    invalid = store.config.invalid_param_code
    if not fields:
        raise ApiError(400, invalid, "fields is required")
    unknown = [f for f in fields if f not in FIELD_SCOPES]
    if unknown:
        raise ApiError(400, invalid, f"Unknown fields: {','.join(unknown)}")
    if any(FIELD_SCOPES[f] not in at.grant.scopes for f in fields):
        if store.config.user_info_scope_error == "scope_permission_missed":
            raise ApiError(400, "scope_permission_missed", "Some fields need additional scopes.")
        raise ApiError(401, "scope_not_authorized", "The user did not authorize the scope for these fields.")
    creator = store.creators[at.grant.username]
    seed = creator.seed
    avatar = f"https://p16-sandbox.tiktokcdn.com/obj/avatar/{creator.username}"
    values: dict[str, Any] = {
        "open_id": at.grant.open_id,
        "union_id": creator.union_id,
        "avatar_url": avatar + ".webp",
        "avatar_url_100": avatar + "~100.webp",
        "avatar_large_url": avatar + "~1080.webp",
        "display_name": seed.nickname or creator.username,
        "bio_description": seed.bio_description,
        "profile_deep_link": f"https://vm.tiktok.com/sandbox/{creator.username}/",
        "is_verified": seed.is_verified,
        "username": creator.username,
        **request.app[VIDEOS].account_counts(creator.username),
    }
    return ok(store, {"user": {f: values[f] for f in fields}})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v2/auth/authorize/", authorize),
        web.post("/v2/auth/authorize/", consent),
        web.post("/v2/oauth/token/", token),
        web.post("/v2/oauth/revoke/", revoke),
        web.get("/v2/user/info/", user_info),
    ]
