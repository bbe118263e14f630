"""publish_service's ``/readyz`` tells the truth: a relay that keeps failing makes it false, naming
the loop, and true again once the relay recovers."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.publish.harness import Harness, running_service
from tests.waiting import wait_for

pytestmark = pytest.mark.stack


async def _readyz(base_url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/readyz") as response:
        return response.status, await response.json()


async def _ready(base_url: str) -> bool:
    status, _body = await _readyz(base_url)
    return status == 200


async def _not_ready_naming(base_url: str, loop: str, detail: str) -> bool:
    status, body = await _readyz(base_url)
    failed = body.get("failed", {}).get("loops", "")
    return status == 503 and f"{loop}: " in failed and detail in failed


async def test_relay_failing_again_and_again_makes_readyz_false_naming_it_then_true(harness: Harness) -> None:
    async with running_service(harness.settings()) as base_url:
        conn = await asyncpg.connect(harness.database_url)
        try:
            # The relay's table vanishes under it: every relay attempt fails, the database still answers.
            await conn.execute("ALTER TABLE publish.outbox RENAME TO outbox_away")
            await wait_for(
                lambda: _not_ready_naming(base_url, "outbox-relay", "UndefinedTableError"),
                timeout=60,
                description="/readyz false naming the failing relay",
            )
            _status, body = await _readyz(base_url)
            assert "database" not in body["failed"]  # the relay is not ready, Postgres is

            await conn.execute("ALTER TABLE publish.outbox_away RENAME TO outbox")
            await wait_for(lambda: _ready(base_url), timeout=60, description="ready again")
        finally:
            await conn.close()
