"""`python -m auth_service`: migrate, serve until SIGTERM, shut down cleanly; bad config fails fast."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import pytest

from tests.auth.harness import Keys, new_sandbox_app, settings_env
from tests.conftest import ROOT
from tests.waiting import wait_for
from tiktok_pipeline.local import free_port
from tiktok_sandbox.config import SandboxConfig

pytestmark = pytest.mark.stack


@pytest.fixture
def sandbox_config(tmp_path) -> SandboxConfig:
    return SandboxConfig(data_dir=str(tmp_path / "sb"), allow_http_web_redirects=True)


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "auth_service",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_migrate_serve_and_sigterm(stack, database_url, topic_prefix, sandbox):
    port = free_port()
    app = await new_sandbox_app(sandbox, [port])
    env = {
        **os.environ,
        **settings_env(
            stack=stack,
            database_url=database_url,
            topic_prefix=topic_prefix,
            sandbox=sandbox,
            app=app,
            port=port,
            keys=Keys.fresh(),
        ),
    }
    code, out, err = await _run("migrate", env=env)
    assert code == 0, err
    assert "0001_auth_schema.sql" in out
    code, out, _ = await _run("migrate", env=env)
    assert code == 0 and "up to date" in out

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "auth_service",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession(trust_env=False) as http:

            async def ready() -> bool:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    return r.status == 200

            await wait_for(ready, timeout=30, ignore=(aiohttp.ClientError,))
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        stderr = (await proc.stderr.read()).decode()
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_missing_setting_fails_fast():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "TOKEN_", "API_KEY"))}
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
    code, _, err = await _run(env=env)
    assert code == 2 and "TIKTOK_CLIENT_KEY" in err
