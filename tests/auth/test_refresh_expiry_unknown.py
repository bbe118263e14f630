"""A token answer without `refresh_expires_in` (issue 13, point 2): the expiry is unknown, not zero.

On connect the account is stored with no refresh expiry (NULL) and stays connected; on a refresh the
expiry already known is kept. Either way the account goes on refreshing, and TikTok's answer to the
refresh decides. Before the fix the missing key read as 0: the account was stored refresh-expired and
sent to re-authorisation without calling TikTok.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.auth.conftest import CREATOR
from tests.auth.harness import TopicReader, seed_accounts
from tests.auth.test_oauth_flow import _session, accounts_rows, connect
from tests.auth.test_refresh import FAST, db_rows, replicas, token_calls
from tests.waiting import wait_for
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import RunningSandbox, run_sandbox

pytestmark = pytest.mark.stack


@pytest.fixture
def sandbox_knobs() -> dict:
    return {"auto_approve": True, "auto_approve_creator": CREATOR, "token_includes_refresh_expires_in": False}


async def test_connect_without_refresh_expires_in_stores_an_unknown_expiry_and_stays_connected(world):
    async with _session() as http:
        account_id = await connect(world, http)
    (row,) = await accounts_rows(world)
    assert row["id"] == account_id and row["status"] == "connected"
    assert row["refresh_expires_at"] is None and row["refresh_due_at"] is not None
    async with (
        aiohttp.ClientSession(trust_env=False) as http,
        http.get(world.auth.base_url + f"/v1/accounts/{account_id}", headers=world.auth.headers) as r,
    ):
        body = await r.json()
    assert r.status == 200 and body["status"] == "connected" and body["refresh_expires_at"] is None


@pytest.fixture
async def silent_sandbox(tmp_path) -> AsyncIterator[RunningSandbox]:
    config = SandboxConfig(
        data_dir=str(tmp_path / "sb"),
        allow_http_web_redirects=True,
        access_token_ttl_s=8,
        token_includes_refresh_expires_in=False,
    )
    async with run_sandbox(config) as sb:
        yield sb


async def test_refresh_without_refresh_expires_in_keeps_the_known_expiry_and_keeps_refreshing(
    stack, database_url, topic_prefix, silent_sandbox
):
    sb = silent_sandbox
    async with (
        replicas(stack, database_url, topic_prefix, sb, 1, refresh=FAST) as (auth,),
        TopicReader(stack.kafka_bootstrap, topic_prefix),
    ):
        await seed_accounts(sb, auth.repo, auth.tiktok_app, 1, due_in=0, refresh_expires_in=30 * 86400.0)
        (before,) = await db_rows(database_url)
        # Two refreshes in a row (8-second tokens): each answer lacks refresh_expires_in.
        rows = await wait_for(lambda: _rows_with_version(database_url, 3), timeout=30)
        (after,) = rows
        assert after["status"] == "connected"
        assert after["refresh_expires_at"] == before["refresh_expires_at"]
        assert token_calls(await sb.control.call_counts()) >= 2


async def _rows_with_version(database_url: str, version: int):
    rows = await db_rows(database_url)
    return rows if rows and all(r["token_version"] >= version for r in rows) else None
