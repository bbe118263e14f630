"""The process and server faults of a run, one at a time: :func:`inject` kills and restarts a
service (at a random moment, or aimed at the middle of an upload or of a token refresh), or stops and
starts the run's own Kafka broker or PostgreSQL."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from tests.auth.kafka_instance import KafkaInstance
from tests.reliability.faults.harness import Run, token_calls
from tests.reliability.pg_instance import PgInstance
from tests.waiting import WaitTimeout, wait_for

MID_UPLOAD_SQL = """SELECT count(*) FROM publish.posts
                    WHERE state = 'uploading' AND bytes_acked > 0 AND bytes_acked < media_size"""


def fault_plan(n_publish_kills: int, n_auth_kills: int, rng: random.Random) -> list[str]:
    """The faults of a run in a random order: half the publish_service kills aimed mid-upload, the
    auth_service kills, one Kafka and one PostgreSQL outage."""
    aimed = n_publish_kills // 2
    plan = (
        ["publish"] * (n_publish_kills - aimed)
        + ["publish_mid_upload"] * aimed
        + ["auth"] * n_auth_kills
        + ["kafka", "postgres"]
    )
    rng.shuffle(plan)
    return plan


async def inject(kind: str, run: Run, kafka: KafkaInstance, pg: PgInstance, rng: random.Random) -> str:
    """Inject one fault; return what was injected."""
    pipeline = run.pipeline
    if kind == "publish":
        await pipeline.kill("publish_service")
        await pipeline.restart("publish_service")
    elif kind == "publish_mid_upload":
        # Aimed: the moment some post has TikTok acknowledge part of its bytes, not all.
        conn = await asyncpg.connect(pipeline.database_url, timeout=10)
        try:

            async def mid_upload() -> bool:
                return bool(await conn.fetchval(MID_UPLOAD_SQL))

            try:
                await wait_for(mid_upload, 20, 0.02)
            except WaitTimeout:
                kind = "publish"  # no upload under way right now: a kill at a random moment then
        finally:
            await conn.close()
        await pipeline.kill("publish_service")
        await pipeline.restart("publish_service")
    elif kind == "auth":
        before = await token_calls(pipeline)

        async def refreshing() -> bool:
            return await token_calls(pipeline) > before

        # Refreshes come every ~30 s per account (60 s tokens, refreshed at half life).
        await wait_for(refreshing, 60, 0.05, description="a token refresh under way")
        await pipeline.kill("auth_service")
        await pipeline.restart("auth_service")
    elif kind == "kafka":
        await kafka.stop()
        await asyncio.sleep(rng.uniform(3.0, 8.0))  # the outage itself
        await kafka.start()
    elif kind == "postgres":
        await pg.stop("immediate")
        await asyncio.sleep(rng.uniform(2.0, 5.0))  # the outage itself
        await pg.start()
    else:
        raise ValueError(kind)
    return kind
