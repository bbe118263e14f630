"""``/readyz`` tells the truth: an outbox relay that keeps failing makes it false, naming the loop."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.auth.harness import Keys, make_settings, new_sandbox_app, running_auth
from tests.common import closed_loopback_port
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


async def _readyz(base_url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/readyz") as response:
        return response.status, await response.json()


def _not_ready_naming(loop: str, detail: str) -> Any:
    """503 naming the loop, with names and states only: ``detail`` (the exception) is not shown."""

    async def check(base_url: str) -> bool:
        status, body = await _readyz(base_url)
        if status != 503:
            return False
        assert detail not in json.dumps(body), body  # no exception text without auth (#12.22)
        assert set(body["checks"].values()) <= {"ok", "failing"}, body
        return f"loops/{loop}" in body["failed"]

    return check


async def _settings(
    stack: Any, database_url: str, topic_prefix: str, sandbox: RunningSandbox, **kw: Any
) -> Any:
    port = free_port()
    app = await new_sandbox_app(sandbox, [port])
    return make_settings(
        stack=stack,
        database_url=database_url,
        topic_prefix=topic_prefix,
        sandbox=sandbox,
        app=app,
        port=port,
        keys=Keys.fresh(),
        **kw,
    )


async def test_relay_failing_again_and_again_makes_readyz_false_then_true_when_it_recovers(
    stack, database_url, topic_prefix, sandbox
) -> None:
    settings = await _settings(stack, database_url, topic_prefix, sandbox)
    async with running_auth(settings) as auth:
        await wait_for(lambda: _ready(auth.base_url), timeout=60, description="auth ready")

        # The relay's table vanishes under it (what a botched manual change would do): every
        # relay attempt now fails, while the database itself still answers the ping.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("ALTER TABLE auth.outbox RENAME TO outbox_away")
            await wait_for(
                lambda: _not_ready_naming("outbox-relay", "UndefinedTableError")(auth.base_url),
                timeout=60,
                description="/readyz false naming the failing relay",
            )
            _status, body = await _readyz(auth.base_url)
            assert "database" not in body["failed"]  # it is the relay that is not ready, not Postgres

            await conn.execute("ALTER TABLE auth.outbox_away RENAME TO outbox")
            await wait_for(lambda: _ready(auth.base_url), timeout=60, description="ready again")
        finally:
            await conn.close()


async def test_kafka_refusing_connections_makes_readyz_false_naming_the_relay(
    stack, database_url, topic_prefix, sandbox
) -> None:
    refused = f"127.0.0.1:{closed_loopback_port()}"
    settings = await _settings(stack, database_url, topic_prefix, sandbox, kafka_bootstrap=refused)
    async with running_auth(settings) as auth:
        # The exception text (the refused address) stays in the log; /readyz names the relay, and
        # the kafka check says only what kind of failure it is.
        port = refused.rsplit(":", 1)[1]
        await wait_for(
            lambda: _not_ready_naming("outbox-relay", port)(auth.base_url),
            timeout=60,
            description="/readyz false naming the relay that cannot reach Kafka",
        )
        _status, body = await _readyz(auth.base_url)
        assert body["reasons"]["kafka"] == "Kafka unavailable", body


async def _ready(base_url: str) -> bool:
    status, _body = await _readyz(base_url)
    return status == 200
