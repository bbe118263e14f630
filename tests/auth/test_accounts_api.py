"""Management API: token-status (a live check at TikTok), disconnect (revoke and forget), API key."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from common.events import EventType
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from tests.auth.test_oauth_flow import _session, connect
from tests.waiting import wait_for

pytestmark = pytest.mark.stack


async def test_token_status_checks_live_and_disconnect_revokes_and_forgets(world):
    async with _session() as http:
        account_id = await connect(world, http)
    base, headers = world.auth.base_url, world.auth.headers
    async with aiohttp.ClientSession(trust_env=False) as http:
        async with http.get(f"{base}/v1/accounts/{account_id}/token-status", headers=headers) as r:
            status = await r.json()
            assert r.status == 200, status
        assert status["live"]["valid"] is True and status["live"]["open_id_matches"] is True
        assert status["token_version"] == 1 and status["status"] == "connected"

        async with http.get(f"{base}/v1/accounts/{account_id}", headers=headers) as r:
            open_id = (await r.json())["open_id"]
        grants = [g for g in world.sandbox.store.grants.values() if g.open_id == open_id]
        assert len(grants) == 1 and not grants[0].revoked

        async with http.delete(f"{base}/v1/accounts/{account_id}", headers=headers) as r:
            body = await r.json()
            assert r.status == 200, body
        assert body == {
            "account_id": account_id,
            "status": "disconnected",
            "revoked": True,
            "revoke_error": None,
        }
        assert grants[0].revoked  # the grant is gone at TikTok

        async with http.get(f"{base}/v1/accounts/{account_id}", headers=headers) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "account_not_found"
        async with http.get(f"{base}/v1/accounts/{account_id}/token-status", headers=headers) as r:
            assert r.status == 404
        async with http.delete(f"{base}/v1/accounts/{account_id}", headers=headers) as r:
            assert r.status == 404

    conn = await asyncpg.connect(world.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM auth.accounts") == 0
    finally:
        await conn.close()
    await wait_for(lambda: world.reader.events(TOPIC_ACCOUNTS, EventType.account_disconnected), timeout=20)
    disconnected = world.reader.events(TOPIC_ACCOUNTS, EventType.account_disconnected)[0]["data"]
    assert disconnected["account_id"] == account_id and disconnected["status"] == "disconnected"
    assert disconnected["reason"] == "revoked"
    # The compacted access-token topic gets a tombstone, so the token disappears from it.
    await wait_for(lambda: account_id in world.reader.tombstones(TOPIC_ACCESS_TOKENS), timeout=20)


async def test_token_status_reports_a_dead_token(world):
    async with _session() as http:
        account_id = await connect(world, http)
    token = await world.auth.repo.access_token(account_id)
    await world.sandbox.control.expire_token(token)
    async with (
        aiohttp.ClientSession(trust_env=False) as http,
        http.get(
            f"{world.auth.base_url}/v1/accounts/{account_id}/token-status", headers=world.auth.headers
        ) as r,
    ):
        body = await r.json()
    assert r.status == 200
    assert body["live"]["valid"] is False and body["live"]["error"] == "access_token_invalid"


async def test_management_endpoints_need_the_api_key(world):
    async with aiohttp.ClientSession(trust_env=False) as http:
        for method, path in [
            ("GET", "/v1/accounts"),
            ("GET", "/v1/accounts/acc_x"),
            ("GET", "/v1/accounts/acc_x/token-status"),
            ("DELETE", "/v1/accounts/acc_x"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
                async with http.request(method, world.auth.base_url + path, headers=headers) as r:
                    assert r.status == 401, (method, path, headers)
                    assert (await r.json())["error"]["code"] == "unauthorized"
        async with http.get(
            world.auth.base_url + "/v1/accounts?status=bogus", headers=world.auth.headers
        ) as r:
            assert r.status == 400
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(world.auth.base_url + path) as r:
                assert r.status == 200, (path, await r.text())
        async with http.get(world.auth.base_url + "/metrics") as r:
            text = await r.text()
        for name in (
            "tiktok_token_refreshes",
            "tiktok_api_calls_total",
            'tiktok_outbox_backlog{service="auth"}',
        ):
            assert name in text, name
