"""A full run (connect, refresh, a failed refresh, token-status, a refused callback, disconnect),
with every log line, Kafka record, HTTP response and stored row captured: no token, code or client
secret appears in plain text anywhere."""

from __future__ import annotations

import io
import logging

import aiohttp
import asyncpg
import pytest

from common.events import EventType
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from common.logging import configure_logging
from tests.auth.conftest import CREATOR
from tests.auth.harness import API_KEY
from tests.waiting import wait_for

pytestmark = pytest.mark.stack


@pytest.fixture
def sandbox_knobs() -> dict:
    # 6-second access tokens: the account refreshes on its own during the run.
    return {"auto_approve": True, "auto_approve_creator": CREATOR, "access_token_ttl_s": 6}


@pytest.fixture
def captured_logs():
    configure_logging("DEBUG", "json")
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(root.handlers[0].formatter)  # the service's own (redacting) renderer
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)
    configure_logging("INFO", "json")


class Recorder:
    """Every response our service sent, as the client saw it (status line, headers, body)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.texts: list[str] = []

    async def take(self, response: aiohttp.ClientResponse) -> None:
        for r in [*response.history, response]:
            if str(r.url).startswith(self.base):
                # What we sent back (not the URL the client asked for: a callback URL carries the code).
                self.texts.append(f"{r.status}\n{dict(r.headers)}")
        if str(response.url).startswith(self.base):
            self.texts.append(await response.text())


async def test_no_token_code_or_secret_in_logs_events_responses_or_rows(world, captured_logs):
    base, headers = world.auth.base_url, world.auth.headers
    rec = Recorder(base)
    sb = world.sandbox
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), trust_env=False) as http:
        async with http.get(base + "/v1/connect") as r:
            await rec.take(r)
            account_id = r.url.query["account_id"]
        # Reconnect step by step, keeping the code; then offer that used code with a fresh state.
        async with http.get(base + "/v1/connect", allow_redirects=False) as r:
            await rec.take(r)
            authorize = r.headers["Location"]
        async with http.get(authorize, allow_redirects=False) as r:
            callback = r.headers["Location"]
        used_code = callback.split("code=")[1].split("&")[0]
        async with http.get(callback) as r:
            await rec.take(r)
        async with http.get(base + "/v1/connect", allow_redirects=False) as r:
            authorize = r.headers["Location"]
        async with http.get(authorize, allow_redirects=False) as r:
            fresh = r.headers["Location"]
        async with http.get(fresh.replace(fresh.split("code=")[1].split("&")[0], used_code)) as r:
            await rec.take(r)
            assert r.status == 502

        # One refresh fails at TikTok (5xx), the next succeeds: both paths are logged.
        await sb.control.inject_fault("/v2/oauth/token/", count=1, status=500, error_code="server_error")
        await wait_for(lambda: _version(world, account_id, 3), timeout=30)

        async with http.get(f"{base}/v1/accounts/{account_id}/token-status", headers=headers) as r:
            await rec.take(r)
            assert r.status == 200
        async with http.get(f"{base}/v1/accounts", headers=headers) as r:
            await rec.take(r)
        async with http.get(f"{base}/metrics") as r:
            await rec.take(r)
        async with http.delete(f"{base}/v1/accounts/{account_id}", headers=headers) as r:
            await rec.take(r)
            assert r.status == 200

    await wait_for(lambda: world.reader.events(TOPIC_ACCOUNTS, EventType.account_disconnected), timeout=20)
    await wait_for(lambda: len(world.reader.events(TOPIC_ACCESS_TOKENS)) >= 3, timeout=20)

    secrets = {
        *sb.store.access_tokens,
        *sb.store.refresh_tokens,
        *sb.store.codes,
        world.tiktok_app.client_secret,
        API_KEY,
    }
    assert len(sb.store.codes) >= 3 and len(sb.store.refresh_tokens) >= 3

    logs = captured_logs.getvalue()
    assert "token_refreshed" in logs and "refresh_failed_will_retry" in logs and "connect_refused" in logs
    kafka = "\n".join(f"{t} {k} {(v or b'').decode()} {h!r}" for t, k, v, h in world.reader.records)
    assert "tiktok.account.refreshed" in kafka
    responses = "\n".join(rec.texts)
    conn = await asyncpg.connect(world.database_url)
    try:
        dumped = []
        for table in ("accounts", "oauth_states", "outbox"):
            dumped += [str(dict(r)) for r in await conn.fetch(f"SELECT * FROM auth.{table}")]
        rows = "\n".join(dumped)
    finally:
        await conn.close()

    for where, text in {"logs": logs, "kafka": kafka, "responses": responses, "database": rows}.items():
        leaked = [s[:8] + "…" for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} secrets in {where}: {leaked}"


async def _version(world, account_id: str, version: int) -> bool:
    account = await world.auth.repo.get(account_id)
    return account is not None and account.token_version >= version
