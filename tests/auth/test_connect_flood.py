"""#12.11: a flood on /v1/connect (no auth, one row per GET) is limited per address, cannot grow
oauth_states past a bound, and cannot starve the refresh loop of database connections."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import asyncpg
import pytest

from auth_service.keys import POOL
from tests.auth.harness import Keys, make_settings, new_sandbox_app, running_auth, seed_accounts
from tests.auth.test_refresh import FAST
from tests.waiting import wait_for
from tiktok_pipeline.local import free_port
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import RunningSandbox, run_sandbox

pytestmark = pytest.mark.stack


@pytest.fixture
async def sandbox(tmp_path) -> AsyncIterator[RunningSandbox]:
    config = SandboxConfig(data_dir=str(tmp_path / "sb"), allow_http_web_redirects=True)
    async with run_sandbox(config) as sb:
        yield sb


async def _settings(stack, database_url, topic_prefix, sandbox, **changes):
    port = free_port()
    app = await new_sandbox_app(sandbox, [port])
    settings = make_settings(
        stack=stack,
        database_url=database_url,
        topic_prefix=topic_prefix,
        sandbox=sandbox,
        app=app,
        port=port,
        keys=Keys.fresh(),
        refresh=FAST,
    )
    return dataclasses.replace(settings, **changes), app


async def _states(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM auth.oauth_states"))
    finally:
        await conn.close()


async def _connects(base_url: str, count: int) -> list[tuple[int, str, str | None]]:
    out = []
    async with aiohttp.ClientSession(trust_env=False) as http:
        for _ in range(count):
            async with http.get(base_url + "/v1/connect", allow_redirects=False) as r:
                out.append((r.status, await r.text(), r.headers.get("Retry-After")))
    return out


async def test_one_address_is_rate_limited_and_told_when_to_come_back(
    stack, database_url, topic_prefix, sandbox
) -> None:
    settings, _app = await _settings(
        stack, database_url, topic_prefix, sandbox, connect_burst=5, connect_per_minute=1.0
    )
    async with running_auth(settings) as auth:
        answers = await _connects(auth.base_url, 8)
    assert [status for status, _, _ in answers] == [302] * 5 + [429] * 3
    _status, page, retry_after = answers[-1]
    assert 'id="code">too_many_connects<' in page and retry_after is not None and int(retry_after) > 0
    assert await _states(database_url) == 5  # the refused ones wrote nothing


async def test_the_oauth_states_table_is_bounded(stack, database_url, topic_prefix, sandbox) -> None:
    settings, _app = await _settings(stack, database_url, topic_prefix, sandbox, oauth_states_max=3)
    async with running_auth(settings) as auth:
        answers = await _connects(auth.base_url, 5)
    assert [status for status, _, _ in answers] == [302, 302, 302, 503, 503]
    assert 'id="code">connect_busy<' in answers[-1][1]
    assert await _states(database_url) == 3


async def test_the_refresh_loop_keeps_connections_the_web_side_cannot_take(
    stack, database_url, topic_prefix, sandbox
) -> None:
    settings, app = await _settings(stack, database_url, topic_prefix, sandbox, db_pool_min=1, db_pool_max=2)
    async with running_auth(settings) as auth, AsyncExitStack() as held:
        [seeded] = await seed_accounts(sandbox, auth.repo, app, 1, due_in=2.0)
        # Every connection of the web handlers' pool is taken (what a flood of /v1/connect does).
        pool = auth.app[POOL]
        for _ in range(settings.db_pool_max):
            await held.enter_async_context(pool.acquire())

        async def refreshed() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                version = await conn.fetchval(
                    "SELECT token_version FROM auth.accounts WHERE id = $1", seeded.account_id
                )
            finally:
                await conn.close()
            return bool(version and version >= 2)

        await wait_for(
            refreshed, timeout=30, description="the due account refreshed while the web pool is full"
        )
