"""#12.12-15: the connect flow against a hostile browser, a malformed token answer and partial consent.

The creator ticks scopes on the sandbox's real consent page (no auto-approve), so the grant holds
exactly what a person allowed.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from auth_service.domain.handoff import derive_key, verify
from tests.auth.conftest import CREATOR
from tests.auth.harness import API_KEY, running_auth
from tiktok_pipeline.local import free_port

pytestmark = pytest.mark.stack

ALL = ["user.info.basic", "video.upload", "video.publish"]


@pytest.fixture
def sandbox_knobs() -> dict:
    return {}  # the consent page: the test ticks the scopes


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), trust_env=False)


async def _consent(world, http: aiohttp.ClientSession, scopes: list[str]) -> tuple[int, str, str]:
    """/v1/connect → the consent page → Authorize with ``scopes`` ticked; (status, final URL, body)."""
    async with http.get(world.auth.base_url + "/v1/connect") as r:
        page = await r.text()
        assert r.status == 200 and "Authorize app" in page, page
    async with http.post(world.sandbox.authorize_url, data=_consent_form(page, scopes)) as r:
        return r.status, str(r.url), await r.text()


def _consent_form(page: str, scopes: list[str]) -> aiohttp.FormData:
    """What a person submits on the sandbox's consent page: Authorize, with ``scopes`` ticked."""
    request_id = re.search(r'name="request_id" value="([^"]+)"', page)
    assert request_id is not None, page
    form = aiohttp.FormData()
    form.add_field("request_id", request_id.group(1))
    form.add_field("creator", CREATOR)
    form.add_field("decision", "authorize")
    for scope in scopes:
        form.add_field("scope", scope)
    return form


async def _rows(world) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(world.database_url)
    try:
        return await conn.fetch("SELECT * FROM auth.accounts")
    finally:
        await conn.close()


def _code(page: str) -> str | None:
    found = re.search(r'id="code">([^<]+)<', page)
    return found.group(1) if found else None


# ------------------------------------------------------------------------------------- #12.12


async def test_a_nonce_cookie_the_browser_brings_is_never_reused(world) -> None:
    planted = "A" * 43  # well formed: the old code took it as this browser's nonce
    url, cookie = world.auth.base_url + "/v1/connect", {"Cookie": f"tt_connect={planted}"}
    async with (
        aiohttp.ClientSession(trust_env=False) as http,
        http.get(url, headers=cookie, allow_redirects=False) as r,
    ):
        assert r.status == 302
        issued = r.cookies["tt_connect"]
    assert issued.value != planted and len(issued.value) == 43
    assert issued["httponly"] and issued["samesite"] == "Lax" and issued["path"] == "/v1/"


async def test_https_redirect_uri_uses_a_host_prefixed_secure_cookie_end_to_end(world) -> None:
    redirect = "https://auth.example.test/v1/oauth/callback"
    app = await world.sandbox.control.create_app(redirect_uris=[redirect])
    port = free_port()
    settings = dataclasses.replace(
        world.auth.settings,
        http_port=port,
        oauth_redirect_uri=redirect,
        tiktok_client_key=app.client_key,
        tiktok_client_secret=type(world.auth.settings.tiktok_client_secret)(app.client_secret),
    )
    async with running_auth(settings) as auth, aiohttp.ClientSession(trust_env=False) as http:
        async with http.get(auth.base_url + "/v1/connect", allow_redirects=False) as r:
            authorize = r.headers["Location"]
            cookie = r.cookies["__Host-tt_connect"]
            raw = r.headers["Set-Cookie"]
        assert "tt_connect" not in {k for k in r.cookies if k != "__Host-tt_connect"}
        assert cookie["secure"] and cookie["path"] == "/" and not cookie["domain"], raw
        nonce = cookie.value

        # A person consents; TikTok would send the browser to the https callback: we replay that
        # redirect against the service's loopback port with the cookie the browser holds.
        async def callback(cookie_header: str) -> tuple[int, str, str]:
            async with http.get(authorize, allow_redirects=True) as page_response:
                page = await page_response.text()
            async with http.post(
                world.sandbox.authorize_url, data=_consent_form(page, ALL), allow_redirects=False
            ) as r:
                location = r.headers["Location"]
            assert location.startswith(redirect)
            local = auth.base_url + location[len("https://auth.example.test") :]
            async with http.get(local, headers={"Cookie": cookie_header}, allow_redirects=False) as r:
                return r.status, r.headers.get("Location", ""), await r.text()

        # The unprefixed name is not the binding any more: refused, nothing stored.
        status, _location, page = await callback(f"tt_connect={nonce}")
        assert status == 400 and _code(page) == "state_wrong_browser"
        # A new start (new nonce), completed with the __Host- cookie: connected.
        async with http.get(auth.base_url + "/v1/connect", allow_redirects=False) as r:
            authorize = r.headers["Location"]
            nonce = r.cookies["__Host-tt_connect"].value
        status, location, _page = await callback(f"__Host-tt_connect={nonce}")
        assert status == 302 and "account_id=" in location, _page


# ------------------------------------------------------------------------------------- #12.13


async def test_the_hand_off_is_signed_with_an_expiry_and_a_forged_one_is_refused(world) -> None:
    async with _session() as http:
        status, final, page = await _consent(world, http, ALL)
        assert status == 200, page
        params = {k: v[0] for k, v in parse_qs(urlsplit(final).query).items()}
        done = verify(derive_key(API_KEY), params, now=float(params["expires"]) - 1)
        assert done.mode == "direct" and [r["id"] for r in await _rows(world)] == [done.account_id]
        assert 'id="account"' in page

        # The upstream app's check (here: /v1/connected, which does the same) refuses a swapped id.
        forged = final.replace(f"account_id={done.account_id}", "account_id=acc_attacker")
        async with http.get(forged) as r:
            assert r.status == 400 and _code(await r.text()) == "handoff_invalid"
        async with http.get(world.auth.base_url + "/v1/connected?account_id=" + done.account_id) as r:
            assert r.status == 400 and _code(await r.text()) == "handoff_invalid"


# ------------------------------------------------------------------------------------- #12.14


@pytest.mark.parametrize("fault", [{"null_fields": ["open_id"]}, {"drop_fields": ["open_id"]}])
async def test_a_token_answer_without_open_id_is_refused_and_nothing_is_stored(world, fault) -> None:
    await world.sandbox.control.inject_fault("/v2/oauth/token/", count=1, **fault)
    async with _session() as http:
        status, _final, page = await _consent(world, http, ALL)
    assert status == 502 and _code(page) == "code_exchange_failed", page
    assert "open_id" in page
    assert await _rows(world) == []


# ------------------------------------------------------------------------------------- #12.15


async def test_without_video_publish_or_upload_the_page_names_the_missing_permission(world) -> None:
    async with _session() as http:
        status, _final, page = await _consent(world, http, ["user.info.basic"])
    assert status == 403 and _code(page) == "scope_missing", page
    assert "video.publish" in page
    assert await _rows(world) == []


async def test_upload_without_publish_connects_drafts_only_and_says_so(world) -> None:
    async with _session() as http:
        status, final, page = await _consent(world, http, ["user.info.basic", "video.upload"])
    assert status == 200, page
    params = {k: v[0] for k, v in parse_qs(urlsplit(final).query).items()}
    assert params["mode"] == "drafts_only"
    assert 'id="mode">Drafts only' in page and "video.publish" in page
    rows = await _rows(world)
    assert len(rows) == 1 and sorted(rows[0]["scopes"]) == ["user.info.basic", "video.upload"]
