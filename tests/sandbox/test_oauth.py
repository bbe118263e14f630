"""§2, §3 and §9.1/§9.5: Login Kit authorize, token, refresh, revoke and user info."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sandbox.conftest import LOG_ID, REDIRECT
from tiktok_sandbox.config import SandboxConfig

DESKTOP_REDIRECT = "http://127.0.0.1:*/callback/"
TOKEN = "/v2/oauth/token/"


def verifier() -> str:
    return secrets.token_urlsafe(48)[:64]


def hex_challenge(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


async def authorize(api, params, *, consent=True, decision="authorize", scopes=None, creator="alice"):
    """Drive the authorize page like a browser without JS: GET, then POST the form. Returns the redirect."""
    async with api.http.get(api.sb.authorize_url, params=params, allow_redirects=False) as r:
        if r.status == 302:
            return r.status, r.headers["Location"]
        page = await r.text()
        if r.status != 200 or not consent:
            return r.status, page
    request_id = re.search(r'name="request_id" value="([^"]+)"', page).group(1)
    form = [("request_id", request_id), ("creator", creator), ("decision", decision)]
    form += [("scope", s) for s in (scopes if scopes is not None else params["scope"].split(","))]
    async with api.http.post(api.sb.authorize_url, data=form, allow_redirects=False) as r:
        return r.status, r.headers.get("Location", await r.text())


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def web_params(app, scope="user.info.basic,video.publish", **extra):
    return {
        "client_key": app.client_key,
        "scope": scope,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "st-123",
        **extra,
    }


async def get_code(world, **extra) -> str:
    status, location = await authorize(world.api, web_params(world.app, **extra))
    assert status == 302, location
    return query(location)["code"]


async def exchange(world, code, **overrides):
    fields = {
        "client_key": world.app.client_key,
        "client_secret": world.app.client_secret,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": REDIRECT,
        **overrides,
    }
    return await world.api.form(TOKEN, {k: v for k, v in fields.items() if v is not None})


async def refresh(world, refresh_token):
    return await world.api.form(
        TOKEN,
        {
            "client_key": world.app.client_key,
            "client_secret": world.app.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        },
    )


# ---- authorize -----------------------------------------------------------------------------------


async def test_authorize_rejects_unknown_client_key_without_redirect(world):
    status, page = await authorize(world.api, {**web_params(world.app), "client_key": "nope"})
    assert status == 400 and "client_key" in page


async def test_authorize_rejects_redirect_uri_not_registered_exactly(world):
    status, page = await authorize(world.api, web_params(world.app, redirect_uri=REDIRECT + "x"))
    assert status == 400 and "redirect_uri" in page


async def test_authorize_redirects_unsupported_response_type(world):
    status, location = await authorize(world.api, web_params(world.app, response_type="token"))
    assert status == 302
    assert query(location) | {} == {
        "error": "unsupported_response_type",
        "error_description": query(location)["error_description"],
        "state": "st-123",
    }


async def test_authorize_redirects_invalid_scope_when_not_approved(sandbox, api):
    app = await sandbox.control.create_app(redirect_uris=[REDIRECT], scopes=["user.info.basic"])
    status, location = await authorize(api, web_params(app, scope="user.info.basic,video.publish"))
    assert status == 302 and query(location)["error"] == "invalid_scope"


async def test_authorize_scope_list_is_comma_separated(world):
    _, location = await authorize(world.api, web_params(world.app, scope="user.info.basic video.publish"))
    assert query(location)["error"] == "invalid_scope"


async def test_consent_page_is_a_plain_html_form_with_authorize_and_deny(world):
    status, page = await authorize(world.api, web_params(world.app), consent=False)
    assert status == 200
    assert '<form method="post" action="/v2/auth/authorize/">' in page
    assert 'id="authorize"' in page and 'id="deny"' in page and "<script" not in page


async def test_consent_authorize_redirects_with_code_scopes_and_state(world):
    status, location = await authorize(world.api, web_params(world.app))
    q = query(location)
    assert status == 302 and location.startswith(REDIRECT + "?")
    assert q["state"] == "st-123" and q["scopes"] == "user.info.basic,video.publish"
    assert "*" in q["code"] and "!" in q["code"]  # real codes need URL-decoding (§2.2)


async def test_consent_deny_redirects_access_denied(world):
    status, location = await authorize(world.api, web_params(world.app), decision="deny")
    q = query(location)
    assert status == 302 and q["error"] == "access_denied" and q["state"] == "st-123"


async def test_consent_user_can_refuse_a_scope(world):
    _, location = await authorize(world.api, web_params(world.app), scopes=["user.info.basic"])
    q = query(location)
    assert q["scopes"] == "user.info.basic"
    r = await exchange(world, q["code"])
    assert r.body["scope"] == "user.info.basic"


async def test_consent_form_cannot_be_replayed(world):
    params = web_params(world.app)
    async with world.api.http.get(world.sb.authorize_url, params=params) as r:
        request_id = re.search(r'name="request_id" value="([^"]+)"', await r.text()).group(1)
    form = {"request_id": request_id, "creator": "alice", "decision": "authorize", "scope": "user.info.basic"}
    async with world.api.http.post(world.sb.authorize_url, data=form, allow_redirects=False) as r:
        assert r.status == 302
    async with world.api.http.post(world.sb.authorize_url, data=form, allow_redirects=False) as r:
        assert r.status == 400


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(auto_approve=True)])
async def test_auto_approve_redirects_without_a_page(sandbox, api):
    app = await sandbox.control.create_app(redirect_uris=[REDIRECT])
    await sandbox.control.create_creator("bob")
    status, location = await authorize(api, web_params(app, sandbox_creator="bob"), consent=False)
    assert status == 302 and "code" in query(location)


async def test_desktop_authorize_requires_s256_code_challenge(sandbox, api):
    app = await sandbox.control.create_app(app_type="desktop", redirect_uris=[DESKTOP_REDIRECT])
    params = {**web_params(app), "redirect_uri": "http://127.0.0.1:5555/callback/"}
    _status, location = await authorize(api, params)
    assert query(location)["error"] == "invalid_request"
    _, location = await authorize(
        api, {**params, "code_challenge": "x" * 64, "code_challenge_method": "plain"}
    )
    assert query(location)["error"] == "invalid_request"


async def test_desktop_redirect_uri_wildcard_port_matches_any_port(sandbox, api):
    await sandbox.control.create_creator("alice")
    app = await sandbox.control.create_app(app_type="desktop", redirect_uris=[DESKTOP_REDIRECT])
    v = verifier()
    params = {
        **web_params(app),
        "redirect_uri": "http://127.0.0.1:61234/callback/",
        "code_challenge": hex_challenge(v),
        "code_challenge_method": "S256",
    }
    _, location = await authorize(api, params)
    assert location.startswith("http://127.0.0.1:61234/callback/?code=")


async def test_web_app_redirect_uris_must_be_https(sandbox):
    with pytest.raises(Exception, match="400"):
        await sandbox.control.create_app(redirect_uris=["http://app.example.com/cb"])


# ---- token: authorization_code -------------------------------------------------------------------


async def test_token_exchange_returns_flat_json_with_tiktok_token_formats(world):
    r = await exchange(world, await get_code(world))
    assert r.status == 200
    body = r.body
    assert set(body) == {
        "access_token",
        "expires_in",
        "open_id",
        "refresh_expires_in",
        "refresh_token",
        "scope",
        "token_type",
    }
    assert re.fullmatch(r"act\.[A-Za-z0-9]+![0-9]{4}", body["access_token"])
    assert re.fullmatch(r"rft\.[A-Za-z0-9]+![0-9]{4}", body["refresh_token"])
    assert body["expires_in"] == 86400 and body["refresh_expires_in"] == 31536000
    assert body["token_type"] == "Bearer" and body["scope"] == "user.info.basic,video.publish"


async def test_token_code_is_single_use(world):
    code = await get_code(world)
    assert (await exchange(world, code)).status == 200
    r = await exchange(world, code)
    assert r.status == 200 and r.body["error"] == "invalid_grant" and LOG_ID.match(r.body["log_id"])


async def test_token_code_expires_after_10_minutes(world):
    code = await get_code(world)
    await world.sb.control.advance_time(601)
    assert (await exchange(world, code)).body["error"] == "invalid_grant"


async def test_token_rejects_redirect_uri_mismatch(world):
    r = await exchange(world, await get_code(world), redirect_uri=REDIRECT + "other")
    assert r.body["error"] == "invalid_grant"
    assert r.body["error_description"] == "Redirect_uri is not matched with the uri when requesting code."


async def test_token_rejects_wrong_client_secret_with_http_200(world):
    r = await exchange(world, await get_code(world), client_secret="wrong")
    assert r.status == 200 and r.body["error"] == "invalid_client" and "access_token" not in r.body


async def test_token_missing_client_secret_is_invalid_request(world):
    r = await exchange(world, await get_code(world), client_secret=None)
    assert r.body == {
        "error": "invalid_request",
        "error_description": "Client secret is missed in request.",
        "log_id": r.body["log_id"],
    }


async def test_token_unsupported_grant_type(world):
    r = await exchange(world, "x", grant_type="password")
    assert r.body["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(oauth_error_status=400)])
async def test_oauth_error_http_status_is_configurable(world):
    r = await exchange(world, "bogus")
    assert r.status == 400 and r.body["error"] == "invalid_grant"


async def desktop_world(sandbox, api, **extra):
    app = await sandbox.control.create_app(app_type="desktop", redirect_uris=[DESKTOP_REDIRECT], **extra)
    await sandbox.control.create_creator("alice")
    return app


async def desktop_code(api, app, challenge) -> str:
    params = {
        **web_params(app),
        "redirect_uri": "http://127.0.0.1:5000/callback/",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    _, location = await authorize(api, params)
    return query(location)["code"]


async def desktop_exchange(api, app, code, v):
    fields = {
        "client_key": app.client_key,
        "client_secret": app.client_secret,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": "http://127.0.0.1:5000/callback/",
    }
    if v is not None:
        fields["code_verifier"] = v
    return await api.form(TOKEN, fields)


async def test_desktop_pkce_hex_challenge_is_accepted(sandbox, api):
    app = await desktop_world(sandbox, api)
    v = verifier()
    r = await desktop_exchange(api, app, await desktop_code(api, app, hex_challenge(v)), v)
    assert "access_token" in r.body


async def test_desktop_pkce_base64url_challenge_is_rejected_by_default(sandbox, api):
    app = await desktop_world(sandbox, api)
    v = verifier()
    b64 = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
    r = await desktop_exchange(api, app, await desktop_code(api, app, b64), v)
    assert r.body["error"] == "invalid_grant"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(pkce_encodings="hex+base64url")])
async def test_desktop_pkce_base64url_accepted_when_lenient(sandbox, api):
    app = await desktop_world(sandbox, api)
    v = verifier()
    b64 = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
    r = await desktop_exchange(api, app, await desktop_code(api, app, b64), v)
    assert "access_token" in r.body


async def test_desktop_pkce_missing_or_wrong_verifier_is_rejected(sandbox, api):
    app = await desktop_world(sandbox, api)
    v = verifier()
    r = await desktop_exchange(api, app, await desktop_code(api, app, hex_challenge(v)), None)
    assert r.body["error"] == "invalid_grant"
    r = await desktop_exchange(api, app, await desktop_code(api, app, hex_challenge(v)), verifier())
    assert r.body["error"] == "invalid_grant"


async def test_web_client_code_verifier_is_ignored(world):
    r = await exchange(world, await get_code(world), code_verifier="st-123")
    assert "access_token" in r.body


# ---- token: refresh_token ------------------------------------------------------------------------


async def test_refresh_rotates_and_the_old_refresh_token_dies(world):
    first = (await exchange(world, await get_code(world))).body
    second = (await refresh(world, first["refresh_token"])).body
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await refresh(world, first["refresh_token"])).body["error"] == "invalid_grant"
    assert "access_token" in (await refresh(world, second["refresh_token"])).body


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(refresh_rotation="never")])
async def test_refresh_rotation_never_keeps_the_refresh_token(world):
    first = (await exchange(world, await get_code(world))).body
    second = (await refresh(world, first["refresh_token"])).body
    assert second["refresh_token"] == first["refresh_token"]


async def test_old_access_token_stays_valid_after_refresh_by_default(world):
    first = (await exchange(world, await get_code(world))).body
    await refresh(world, first["refresh_token"])
    r = await world.api.get("/v2/user/info/", first["access_token"], {"fields": "open_id"})
    assert r.code == "ok"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(old_access_token_after_refresh="revoked")])
async def test_old_access_token_revoked_after_refresh_when_configured(world):
    first = (await exchange(world, await get_code(world))).body
    second = (await refresh(world, first["refresh_token"])).body
    r = await world.api.get("/v2/user/info/", first["access_token"], {"fields": "open_id"})
    assert r.status == 401 and r.code == "access_token_invalid"
    r = await world.api.get("/v2/user/info/", second["access_token"], {"fields": "open_id"})
    assert r.code == "ok"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(token_preset="2026")])
async def test_token_lifetimes_2026_preset(world):
    body = (await exchange(world, await get_code(world))).body
    assert body["expires_in"] == 7200 and body["refresh_expires_in"] == 15552000


async def test_access_token_expires_after_expires_in(world):
    body = (await exchange(world, await get_code(world))).body
    await world.sb.control.advance_time(86401)
    r = await world.api.get("/v2/user/info/", body["access_token"], {"fields": "open_id"})
    assert r.status == 401 and r.code == "access_token_invalid"


async def test_refresh_expiry_counts_from_initial_issuance(world):
    body = (await exchange(world, await get_code(world))).body
    await world.sb.control.advance_time(1000)
    again = (await refresh(world, body["refresh_token"])).body
    assert again["refresh_expires_in"] == 31536000 - 1000


async def test_expired_refresh_token_is_invalid_grant(world):
    body = (await exchange(world, await get_code(world))).body
    await world.sb.control.advance_time(31536001)
    r = await refresh(world, body["refresh_token"])
    assert r.status == 200 and r.body["error"] == "invalid_grant"


# ---- revoke ----------------------------------------------------------------------------------------


async def test_revoke_kills_every_token_of_the_grant_and_emits_authorization_removed(world):
    body = (await exchange(world, await get_code(world))).body
    r = await world.api.form(
        "/v2/oauth/revoke/",
        {
            "client_key": world.app.client_key,
            "client_secret": world.app.client_secret,
            "token": body["access_token"],
        },
    )
    assert r.status == 200 and r.body == {}
    assert (await world.api.get("/v2/user/info/", body["access_token"], {"fields": "open_id"})).status == 401
    assert (await refresh(world, body["refresh_token"])).body["error"] == "invalid_grant"
    events = [e for e in await world.sb.control.events() if e["event"] == "authorization.removed"]
    assert events[-1]["content"] == {"reason": 5} and events[-1]["user_openid"] == body["open_id"]


async def test_revoke_with_invalid_token_is_an_oauth_error(world):
    r = await world.api.form(
        "/v2/oauth/revoke/",
        {
            "client_key": world.app.client_key,
            "client_secret": world.app.client_secret,
            "token": "act.nope!0000",
        },
    )
    assert r.body["error"] == "invalid_request"
    assert r.body["error_description"] == "Access token is invalid or expired."


# ---- user info -------------------------------------------------------------------------------------


async def test_user_info_returns_only_requested_fields(world):
    r = await world.api.get("/v2/user/info/", world.t, {"fields": "open_id,display_name"})
    assert r.status == 200 and r.code == "ok" and LOG_ID.match(r.body["error"]["log_id"])
    assert r.data == {"user": {"open_id": world.token.open_id, "display_name": "Alice"}}


async def test_user_info_requires_fields(world):
    r = await world.api.get("/v2/user/info/", world.t)
    assert r.status == 400 and r.code == "invalid_params"


async def test_user_info_field_outside_granted_scopes_is_scope_not_authorized(world):
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["user.info.basic"])
    r = await world.api.get("/v2/user/info/", token.access_token, {"fields": "open_id,username"})
    assert r.status == 401 and r.code == "scope_not_authorized" and r.data == {}


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(user_info_scope_error="scope_permission_missed")])
async def test_user_info_scope_error_is_configurable(world):
    token = await world.sb.control.issue_token(world.app.client_key, "alice", ["user.info.basic"])
    r = await world.api.get("/v2/user/info/", token.access_token, {"fields": "follower_count"})
    assert r.status == 400 and r.code == "scope_permission_missed"


async def test_user_info_open_id_differs_per_app_union_id_does_not(world):
    other = await world.sb.control.create_app()
    t2 = await world.sb.control.issue_token(other.client_key, "alice")
    a = (await world.api.get("/v2/user/info/", world.t, {"fields": "open_id,union_id"})).data["user"]
    b = (await world.api.get("/v2/user/info/", t2.access_token, {"fields": "open_id,union_id"})).data["user"]
    assert a["open_id"] != b["open_id"] and a["union_id"] == b["union_id"]


async def test_client_credentials_token_cannot_post(world):
    r = await world.api.form(
        TOKEN,
        {
            "client_key": world.app.client_key,
            "client_secret": world.app.client_secret,
            "grant_type": "client_credentials",
        },
    )
    assert r.body["expires_in"] == 7200
    c = await world.api.post("/v2/post/publish/creator_info/query/", r.body["access_token"], {})
    assert c.status == 401 and c.code == "access_token_invalid"


@pytest.mark.parametrize(
    ("sandbox_config", "rotates"),
    [
        (SandboxConfig(refresh_rotation="sometimes", refresh_rotation_probability=1.0), True),
        (SandboxConfig(refresh_rotation="sometimes", refresh_rotation_probability=0.0), False),
    ],
)
async def test_refresh_rotation_sometimes_follows_its_probability(world, rotates):
    first = (await exchange(world, await get_code(world))).body
    second = (await refresh(world, first["refresh_token"])).body
    assert (second["refresh_token"] != first["refresh_token"]) is rotates


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(refresh_expiry_slides=True)])
async def test_refresh_expiry_slides_when_configured(world):
    body = (await exchange(world, await get_code(world))).body
    await world.sb.control.advance_time(1000)
    again = (await refresh(world, body["refresh_token"])).body
    assert again["refresh_expires_in"] == 31536000


async def test_authorize_without_state_returns_no_state(world):
    params = web_params(world.app)
    del params["state"]
    _, location = await authorize(world.api, params)
    assert "state" not in query(location) and "code" in query(location)
