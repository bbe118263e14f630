"""`python -m auth_service rotate-keys` while replicas keep refreshing: every ciphertext ends under the
active key, access tokens are re-announced under the new transport key, and a replica that knows
only the new keys then works (the old key can be dropped)."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest

from auth_service.adapters.postgres import Repository
from auth_service.adapters.vault import Vault
from common.cipher import KeyRing, TokenCipher, generate_key, transport_purpose
from common.kafka import TOPIC_ACCESS_TOKENS
from tests.auth.harness import (
    Keys,
    TopicReader,
    make_settings,
    new_sandbox_app,
    running_auth,
    seed_accounts,
    settings_env,
)
from tests.auth.test_refresh import FAST, _refreshes
from tests.conftest import ROOT
from tests.waiting import wait_for
from tiktok_pipeline.local import free_port
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import run_sandbox

pytestmark = [pytest.mark.stack, pytest.mark.slow]


async def _key_ids(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT access_token_ct, refresh_token_ct FROM auth.accounts")
    finally:
        await conn.close()
    return {ct.split(".")[1] for r in rows for ct in (r["access_token_ct"], r["refresh_token_ct"])}


async def test_rotate_keys_without_downtime(stack, database_url, topic_prefix, tmp_path):
    k1, k2, t1, t2 = generate_key(), generate_key(), generate_key(), generate_key()
    old = Keys(f"k1:{k1}", f"t1:{t1}")
    both = Keys(f"k1:{k1},k2:{k2}", f"t1:{t1},t2:{t2}")  # the last listed is active: k2, t2
    new = Keys(f"k2:{k2}", f"t2:{t2}")
    config = SandboxConfig(
        data_dir=str(tmp_path / "sb"),
        allow_http_web_redirects=True,
        access_token_ttl_s=20,
        refresh_rotation="always",
    )
    async with run_sandbox(config) as sb:
        ports = [free_port(), free_port()]
        app = await new_sandbox_app(sb, ports)
        common = dict(stack=stack, database_url=database_url, topic_prefix=topic_prefix, sandbox=sb, app=app)

        # Accounts stored under the old key (as an older release would have), all due now.
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            from auth_service.app import MIGRATIONS
            from common.db import apply_migrations

            await apply_migrations(pool, "auth", MIGRATIONS)
            old_vault = Vault(
                TokenCipher(KeyRing.parse(old.token_spec)), TokenCipher(KeyRing.parse(old.transport_spec))
            )
            await seed_accounts(sb, Repository(pool, old_vault, topic_prefix=topic_prefix), app, 60, due_in=0)
        finally:
            await pool.close()
        assert await _key_ids(database_url) == {"k1"}

        # Step 1-2: replicas know both keys, the new one active; they refresh while the command runs.
        settings = make_settings(**common, port=ports[0], keys=both, refresh=FAST)
        async with running_auth(settings) as auth, TopicReader(stack.kafka_bootstrap, topic_prefix) as reader:
            env = {**os.environ, **settings_env(**common, port=ports[1], keys=both), "LOG_FORMAT": "json"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "auth_service",
                "rotate-keys",
                "--batch-size",
                "7",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()
            assert b"rotated:" in out
            assert await _key_ids(database_url) == {"k2"}
            # Every connected account's current token is on Kafka under the new transport key.
            new_transport = TokenCipher(KeyRing.parse(new.transport_spec))

            def announced_under_t2() -> set[str]:
                return {
                    e["data"]["account_id"]
                    for e in reader.events(TOPIC_ACCESS_TOKENS)
                    if e["data"]["ciphertext"].startswith("v1.t2.")
                }

            await wait_for(lambda: len(announced_under_t2()) == 60, timeout=30)
            for e in reader.events(TOPIC_ACCESS_TOKENS):
                if e["data"]["ciphertext"].startswith("v1.t2."):
                    token = new_transport.decrypt(
                        e["data"]["ciphertext"],
                        account_id=e["data"]["account_id"],
                        purpose=transport_purpose(e["data"]["token_version"]),
                    )
                    assert token in sb.store.access_tokens
            await wait_for(lambda: _refreshes(auth)["ok"] >= 60, timeout=30)  # refreshing went on
        assert _refreshes(auth)["reauth_required"] == 0

        # Step 3: the old key is dropped; a replica with only the new keys refreshes every account.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE auth.accounts SET refresh_due_at = now()")
            before = {
                r["id"]: r["token_version"]
                for r in await conn.fetch("SELECT id, token_version FROM auth.accounts")
            }
        finally:
            await conn.close()
        settings = make_settings(**common, port=ports[1], keys=new, refresh=FAST)
        async with running_auth(settings) as auth2:

            async def all_refreshed() -> bool:
                c = await asyncpg.connect(database_url)
                try:
                    rows = await c.fetch("SELECT id, token_version, status FROM auth.accounts")
                finally:
                    await c.close()
                return all(r["token_version"] > before[r["id"]] and r["status"] == "connected" for r in rows)

            await wait_for(all_refreshed, timeout=30)
        assert _refreshes(auth2)["reauth_required"] == 0
