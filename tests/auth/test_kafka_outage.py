"""Kafka away for a while: refreshes go on, events wait in the outbox, and all arrive afterwards.

Runs its own Kafka broker (tests/auth/kafka_instance.py): stopping the shared one would break other
engineers' tests running at the same time.
"""

from __future__ import annotations

import time

import asyncpg
import pytest

from common.events import EventType
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from tests.auth.harness import (
    Keys,
    TopicReader,
    make_settings,
    new_sandbox_app,
    running_auth,
    seed_accounts,
)
from tests.auth.kafka_instance import KafkaInstance
from tests.auth.test_refresh import FAST, _refreshes
from tests.waiting import wait_for
from tiktok_pipeline.local import free_port
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import run_sandbox

pytestmark = [pytest.mark.stack, pytest.mark.slow]

OUTAGE_S = 25.0
ACCOUNTS = 20


async def _fetch(database_url: str, sql: str) -> list:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def _versions(database_url: str) -> dict[str, int]:
    rows = await _fetch(database_url, "SELECT id, token_version FROM auth.accounts")
    return {r["id"]: r["token_version"] for r in rows}


async def _backlog(database_url: str) -> int:
    return (await _fetch(database_url, "SELECT count(*) AS n FROM auth.outbox"))[0]["n"]


@pytest.mark.timeout(300)
async def test_refreshes_continue_while_kafka_is_down_and_every_event_arrives_afterwards(
    stack, database_url, tmp_path
):
    prefix = "outage."
    config = SandboxConfig(
        data_dir=str(tmp_path / "sb"),
        allow_http_web_redirects=True,
        access_token_ttl_s=8,
        refresh_rotation="always",
    )
    async with KafkaInstance(tmp_path / "kafka") as kafka, run_sandbox(config) as sb:
        port = free_port()
        app = await new_sandbox_app(sb, [port])
        settings = make_settings(
            stack=stack,
            database_url=database_url,
            topic_prefix=prefix,
            sandbox=sb,
            app=app,
            port=port,
            keys=Keys.fresh(),
            kafka_bootstrap=kafka.bootstrap,
            refresh=FAST,
        )
        async with running_auth(settings) as auth:
            seeds = await seed_accounts(sb, auth.repo, app, ACCOUNTS, due_in=0)
            ids = {s.account_id for s in seeds}
            # Before the outage: events flow.
            async with TopicReader(kafka.bootstrap, prefix) as reader:
                await wait_for(
                    lambda: {e["data"]["account_id"] for e in reader.events(TOPIC_ACCESS_TOKENS)} == ids,
                    timeout=60,
                    description="first access tokens on Kafka",
                )

            await kafka.stop()
            down_at = time.monotonic()
            before = await _versions(database_url)

            async def refreshed_through_outage() -> bool:
                now = await _versions(database_url)
                long_enough = time.monotonic() - down_at >= OUTAGE_S
                return long_enough and all(now[i] >= before[i] + 3 for i in ids)

            await wait_for(refreshed_through_outage, timeout=OUTAGE_S + 30, interval=0.5)
            waiting = await _backlog(database_url)
            assert waiting >= ACCOUNTS * 3 * 2  # (refreshed + access token) per refresh, still queued
            rows = await _fetch(database_url, "SELECT status FROM auth.accounts")
            assert {r["status"] for r in rows} == {"connected"}

            await kafka.start()
            await wait_for(
                lambda: _backlog_is(database_url, 0),
                timeout=90,
                interval=0.5,
                description="outbox drained after Kafka came back",
            )
        final = await _versions(database_url)  # the replica has stopped

        async with TopicReader(kafka.bootstrap, prefix) as reader:
            expected_tokens = sum(v - 1 for v in final.values())

            def all_arrived() -> bool:
                return len(reader.events(TOPIC_ACCESS_TOKENS)) >= expected_tokens

            await wait_for(all_arrived, timeout=60, description="every access-token event")
            for account_id, version in final.items():
                tokens = [
                    e["data"]["token_version"]
                    for e in reader.events(TOPIC_ACCESS_TOKENS)
                    if e["data"]["account_id"] == account_id
                ]
                # Every version, in order, none missing (at least once: repeats would be allowed).
                assert sorted(set(tokens)) == list(range(2, version + 1)), (account_id, tokens)
                assert tokens == sorted(tokens)
                refreshed = [
                    e["data"]["token_version"]
                    for e in reader.events(TOPIC_ACCOUNTS, EventType.account_refreshed)
                    if e["data"]["account_id"] == account_id
                ]
                assert sorted(set(refreshed)) == list(range(2, version + 1))
        assert _refreshes(auth)["reauth_required"] == 0


async def _backlog_is(database_url: str, n: int) -> bool:
    return await _backlog(database_url) == n
