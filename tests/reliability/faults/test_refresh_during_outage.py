"""A token refresh that TikTok answers while PostgreSQL is down is stored once it is back: the
account is not lost."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from common.settings import EnvReader
from tests.reliability.faults.harness import Run, sandbox_post, token_calls
from tests.reliability.faults.scenario import BASE_ENV, base_sandbox
from tests.reliability.pg_instance import PgInstance
from tests.waiting import wait_for
from tiktok_pipeline.local import LocalPipeline

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.mark.timeout(180)
async def test_a_refresh_answered_while_postgres_is_down_is_stored_once_it_is_back(stack, workdir):
    """TikTok rotates the refresh token when it answers: if auth_service then cannot commit the new
    pair, the account is lost for good (the old refresh token is dead). A Postgres restart longer
    than a few quick retries must not do that: the answer is kept and committed when it returns."""
    async with PgInstance() as pg:
        pipeline = LocalPipeline(
            EnvReader({**stack.env(), "DATABASE_URL": pg.url, "S3_BUCKET": "media"}),
            workdir / "pipeline",
            creators=("creator0",),
            sandbox_overrides={**base_sandbox(1), "access_token_ttl_s": 16},
            extra_env={**BASE_ENV, "AUTH_REFRESH_LEASE_S": "40"},
        )
        pipeline.work.mkdir()
        try:
            await pipeline.start()
            account = await pipeline.connect_creator(creator="creator0")
            before = await token_calls(pipeline)
            # The next refresh reaches TikTok and is answered 1.5 s later; Postgres is gone by then.
            await sandbox_post(
                pipeline, "/_sandbox/faults", {"endpoint": "/v2/oauth/token/", "latency_ms": 1500, "count": 1}
            )

            async def refreshing() -> bool:
                return await token_calls(pipeline) > before

            await wait_for(refreshing, 30, 0.02, description="the first refresh under way")
            await pg.stop("immediate")
            await asyncio.sleep(10)  # the outage: longer than the old five quick commit tries
            await pg.start()
            run = Run(pipeline, stack.kafka_bootstrap)

            async def refreshed() -> dict[str, Any] | None:
                headers = {"Authorization": f"Bearer {pipeline.api_key}"}
                async with (
                    aiohttp.ClientSession(headers=headers) as http,
                    http.get(f"{pipeline.auth_url}/v1/accounts/{account}") as r,
                ):
                    body = await r.json() if r.status == 200 else None
                return (
                    body if body and (body["status"] != "connected" or body["token_version"] >= 2) else None
                )

            body = await wait_for(refreshed, 60, 0.2, ignore=(aiohttp.ClientError,))
            assert body["status"] == "connected", body
            assert await run.accounts_status() == {account: "connected"}
        finally:
            await pipeline.stop()
