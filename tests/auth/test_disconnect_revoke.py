"""#12.16: disconnecting an account whose access token has expired revokes the grant (refresh first);
when TikTok cannot be made to revoke now, the account stays ``revoke_pending`` and is retried."""

from __future__ import annotations

import dataclasses

import aiohttp
import asyncpg
import pytest

from common.events import EventType
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from tests.auth.harness import running_auth
from tests.auth.test_oauth_flow import _session, connect
from tests.waiting import wait_for
from tiktok_pipeline.local import free_port

pytestmark = pytest.mark.stack

TOKEN_PATH = "/v2/oauth/token/"


def _grant(world, open_id: str):
    [grant] = [g for g in world.sandbox.store.grants.values() if g.open_id == open_id]
    return grant


async def _open_id(database_url: str, account_id: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT open_id FROM auth.accounts WHERE id = $1", account_id)
    finally:
        await conn.close()


async def test_an_expired_access_token_is_refreshed_then_the_grant_revoked(world) -> None:
    async with _session() as http:
        account_id = await connect(world, http)
    open_id = await _open_id(world.database_url, account_id)
    assert open_id is not None
    # TikTok's clock passes the access token's expiry (ours does not know yet): a revoke with it is
    # refused with invalid_request, and the old code forgot the account with the grant still alive.
    await world.sandbox.control.advance_time(2 * 86400)
    async with aiohttp.ClientSession(trust_env=False) as http:
        url = f"{world.auth.base_url}/v1/accounts/{account_id}"
        async with http.delete(url, headers=world.auth.headers) as r:
            body = await r.json()
    assert r.status == 200 and body["revoked"] is True and body["revoke_error"] is None, body
    assert _grant(world, open_id).revoked  # no live grant left at TikTok
    assert await _open_id(world.database_url, account_id) is None


async def test_a_revoke_tiktok_cannot_take_now_stays_pending_and_is_retried(world) -> None:
    async with _session() as http:
        account_id = await connect(world, http)
    open_id = await _open_id(world.database_url, account_id)
    assert open_id is not None
    await world.sandbox.control.advance_time(2 * 86400)
    await world.sandbox.control.inject_fault(TOKEN_PATH, count=None, error_code="temporarily_unavailable")
    fast = dataclasses.replace(
        world.auth.settings, http_port=free_port(), revoke_retry_base_s=0.5, revoke_retry_cap_s=1.0
    )
    async with running_auth(fast) as auth, aiohttp.ClientSession(trust_env=False) as http:
        url = f"{auth.base_url}/v1/accounts/{account_id}"
        async with http.delete(url, headers=auth.headers) as r:
            body = await r.json()
        assert r.status == 202, body
        assert body["status"] == "revoke_pending" and body["revoked"] is False
        assert body["revoke_error"] == "refresh:temporarily_unavailable" and "retried" in body["message"]
        async with http.get(url, headers=auth.headers) as r:
            shown = await r.json()
        assert (
            shown["status"] == "revoke_pending" and shown["last_error"] == "refresh:temporarily_unavailable"
        )
        assert not _grant(world, open_id).revoked
        # publish_service is told at once: the account is disconnected and its token tombstoned.
        await wait_for(lambda: account_id in world.reader.tombstones(TOPIC_ACCESS_TOKENS), timeout=20)
        [gone] = world.reader.events(TOPIC_ACCOUNTS, EventType.account_disconnected)
        assert gone["data"]["reason"] == "revoke_pending"

        # TikTok answers again: the background retry refreshes, revokes and forgets the account.
        await world.sandbox.control.clear_faults()
        await wait_for(lambda: _grant(world, open_id).revoked, timeout=30, description="grant revoked")

        async def forgotten() -> bool:
            return await _open_id(world.database_url, account_id) is None

        await wait_for(forgotten, timeout=30, description="the pending account forgotten")
    # One disconnected event only: the retry does not announce it again.
    assert len(world.reader.events(TOPIC_ACCOUNTS, EventType.account_disconnected)) == 1
