"""The OAuth connect flow end to end: our app, the sandbox's authorize page, real Postgres and Kafka."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from common.cipher import transport_purpose
from common.events import EventType
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from tests.auth.conftest import CREATOR
from tests.waiting import wait_for

pytestmark = pytest.mark.stack


def _session() -> aiohttp.ClientSession:
    # unsafe=True: keep cookies for an IP-address host (127.0.0.1), as a browser does.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), trust_env=False)


async def connect(world, http: aiohttp.ClientSession) -> str:
    async with http.get(world.auth.base_url + "/v1/connect") as r:
        assert r.status == 200, await r.text()
        final = str(r.url)
        assert [str(h.url).split("?")[0] for h in r.history] == [
            world.auth.base_url + "/v1/connect",
            world.sandbox.authorize_url,
            world.auth.base_url + "/v1/oauth/callback",
        ]
    assert final.startswith(world.auth.base_url + "/v1/connected?")
    params = parse_qs(urlsplit(final).query)
    assert params["from"] == ["test"]  # the configured success URL's own query is kept
    return params["account_id"][0]


async def accounts_rows(world) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(world.database_url)
    try:
        return await conn.fetch("SELECT * FROM auth.accounts ORDER BY created_at")
    finally:
        await conn.close()


async def test_browserless_round_trip_stores_account_and_announces_it(world):
    async with _session() as http:
        account_id = await connect(world, http)

    rows = await accounts_rows(world)
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == account_id and account_id.startswith("acc_")
    assert row["status"] == "connected" and row["token_version"] == 1
    assert row["display_name"] == "Alice A."
    assert row["access_token_ct"].startswith("v1.k1.") and row["refresh_token_ct"].startswith("v1.k1.")
    assert row["refresh_due_at"] < row["access_expires_at"]
    creator_open_id = row["open_id"]

    # The management API shows it (with the API key only).
    async with aiohttp.ClientSession(trust_env=False) as http:
        async with http.get(world.auth.base_url + f"/v1/accounts/{account_id}") as r:
            assert r.status == 401
        async with http.get(
            world.auth.base_url + f"/v1/accounts/{account_id}", headers=world.auth.headers
        ) as r:
            body = await r.json()
            assert r.status == 200
        assert body["status"] == "connected" and body["open_id"] == creator_open_id
        async with http.get(world.auth.base_url + "/v1/accounts", headers=world.auth.headers) as r:
            listed = await r.json()
        assert [a["id"] for a in listed["accounts"]] == [account_id]

    # Events: account connected, and the access token sealed with the transport key.
    connected = await wait_for(
        lambda: world.reader.events(TOPIC_ACCOUNTS, EventType.account_connected), timeout=20
    )
    assert connected[0]["data"]["account_id"] == account_id
    tokens = await wait_for(lambda: world.reader.events(TOPIC_ACCESS_TOKENS), timeout=20)
    data = tokens[0]["data"]
    assert data["token_version"] == 1
    access_token = world.keys.transport_cipher().decrypt(
        data["ciphertext"], account_id=account_id, purpose=transport_purpose(data["token_version"])
    )
    assert access_token in world.sandbox.store.access_tokens


async def test_reconnecting_the_same_user_updates_the_same_account(world):
    async with _session() as http:
        first = await connect(world, http)
        second = await connect(world, http)
    assert first == second
    rows = await accounts_rows(world)
    assert len(rows) == 1 and rows[0]["token_version"] == 2 and rows[0]["status"] == "connected"


async def test_access_denied_shows_a_page_and_stores_nothing(world):
    world.sandbox.app  # noqa: B018 - the sandbox denies when the consent form says so
    async with _session() as http:
        async with http.get(world.auth.base_url + "/v1/connect", allow_redirects=False) as r:
            authorize = r.headers["Location"]
        state = parse_qs(urlsplit(authorize).query)["state"][0]
        callback = world.auth.base_url + "/v1/oauth/callback"
        async with http.get(
            callback, params={"error": "access_denied", "error_description": "no", "state": state}
        ) as r:
            page = await r.text()
            assert r.status == 403
            assert 'id="code">access_denied<' in page
    assert await accounts_rows(world) == []


async def _authorize_location(world, http) -> str:
    async with http.get(world.auth.base_url + "/v1/connect", allow_redirects=False) as r:
        assert r.status == 302
        return r.headers["Location"]


async def _sandbox_callback(http, authorize: str) -> str:
    """Let the sandbox approve; return our callback URL with its code and state, not yet visited."""
    async with http.get(authorize, allow_redirects=False) as r:
        assert r.status == 302
        return r.headers["Location"]


async def _refused(http, url: str, code: str, status: int = 400) -> None:
    async with http.get(url, allow_redirects=False) as r:
        page = await r.text()
        assert r.status == status, page
        assert r.content_type == "text/html"
        assert f'id="code">{code}<' in page, page
        assert "<h1" in page


async def test_replayed_state_is_refused(world):
    async with _session() as http:
        callback = await _sandbox_callback(http, await _authorize_location(world, http))
        async with http.get(callback, allow_redirects=False) as r:
            assert r.status == 302
        rows_after_first = await accounts_rows(world)
        # The same state again (even in the same browser, with a fresh code): refused.
        state = parse_qs(urlsplit(callback).query)["state"][0]
        again = await _sandbox_callback(
            http, _replace_query(await _authorize_location(world, http), state=state)
        )
        await _refused(http, again, "state_used")
    assert [r["token_version"] for r in await accounts_rows(world)] == [
        r["token_version"] for r in rows_after_first
    ]


async def test_expired_state_is_refused(world):
    async with _session() as http:
        callback = await _sandbox_callback(http, await _authorize_location(world, http))
        conn = await asyncpg.connect(world.database_url)
        try:
            await conn.execute("UPDATE auth.oauth_states SET expires_at = now() - interval '1 second'")
        finally:
            await conn.close()
        await _refused(http, callback, "state_expired")
    assert await accounts_rows(world) == []


async def test_forged_and_missing_state_are_refused(world):
    async with _session() as http:
        callback = await _sandbox_callback(http, await _authorize_location(world, http))
        await _refused(http, _replace_query(callback, state="forged" + "x" * 40), "state_invalid")
        await _refused(http, _drop_query(callback, "state"), "state_missing")
    assert await accounts_rows(world) == []


async def test_state_from_another_browser_is_refused(world):
    async with _session() as victim, _session() as attacker:
        callback = await _sandbox_callback(attacker, await _authorize_location(world, attacker))
        # The attacker sends its callback link to the victim: the victim's browser has no matching cookie.
        await _refused(victim, callback, "state_wrong_browser")
    assert await accounts_rows(world) == []


def _replace_query(url: str, **changes: str) -> str:
    from urllib.parse import urlencode

    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q.update(changes)
    return parts._replace(query=urlencode(q)).geturl()


def _drop_query(url: str, name: str) -> str:
    from urllib.parse import urlencode

    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items() if k != name}
    return parts._replace(query=urlencode(q)).geturl()


async def test_connect_uses_pkce_for_desktop_apps(stack, database_url, topic_prefix, tmp_path):
    from tests.auth.harness import Keys, make_settings, running_auth
    from tiktok_pipeline.local import free_port
    from tiktok_sandbox.config import SandboxConfig
    from tiktok_sandbox.testing import run_sandbox

    config = SandboxConfig(data_dir=str(tmp_path / "sb"), auto_approve=True, auto_approve_creator=CREATOR)
    async with run_sandbox(config) as sb:
        await sb.control.create_creator(CREATOR)
        port = free_port()
        app = await sb.control.create_app(
            app_type="desktop", redirect_uris=[f"http://127.0.0.1:{port}/v1/oauth/callback"]
        )
        settings = make_settings(
            stack=stack,
            database_url=database_url,
            topic_prefix=topic_prefix,
            sandbox=sb,
            app=app,
            port=port,
            keys=Keys.fresh(),
            app_type="desktop",
        )
        async with running_auth(settings) as auth, _session() as http:
            async with http.get(auth.base_url + "/v1/connect", allow_redirects=False) as r:
                q = parse_qs(urlsplit(r.headers["Location"]).query)
            assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 64
            async with http.get(auth.base_url + "/v1/connect") as r:
                assert r.status == 200 and "account_id=" in str(r.url)


async def test_reconnecting_an_account_that_needs_reauth_brings_it_back(world):
    async with _session() as http:
        account_id = await connect(world, http)
        conn = await asyncpg.connect(world.database_url)
        try:
            await conn.execute("UPDATE auth.accounts SET status = 'reauth_required', refresh_due_at = NULL")
        finally:
            await conn.close()
        assert await connect(world, http) == account_id
    (row,) = await accounts_rows(world)
    assert row["status"] == "connected" and row["token_version"] == 2 and row["refresh_due_at"] is not None
    connected = await wait_for(
        lambda: len(world.reader.events(TOPIC_ACCOUNTS, EventType.account_connected)) >= 2 or None, timeout=20
    )
    assert connected
    assert [e["data"]["token_version"] for e in world.reader.events(TOPIC_ACCESS_TOKENS)][-1] == 2
