"""publish_service's ``/readyz`` tells the truth: a relay that keeps failing makes it false, naming
the loop, and true again once the relay recovers."""

from __future__ import annotations

import json
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
    """503 naming the loop, with names and states only: ``detail`` (the exception) is not shown."""
    status, body = await _readyz(base_url)
    if status != 503:
        return False
    assert detail not in json.dumps(body), body  # no exception text without auth (#12.22)
    assert set(body["checks"].values()) <= {"ok", "failing"}, body
    return f"loops/{loop}" in body["failed"]


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
