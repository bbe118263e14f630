"""With METRICS_PORT set, auth_service serves /metrics there and not on its HTTP port."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from auth_service.settings import Settings
from tests.auth.harness import Keys, new_sandbox_app, running_auth, settings_env
from tiktok_pipeline.local import free_port
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import run_sandbox

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def test_metrics_on_their_own_port(
    stack: Any, database_url: str, topic_prefix: str, tmp_path: Any
) -> None:
    async with run_sandbox(
        SandboxConfig(data_dir=str(tmp_path / "sandbox"), allow_http_web_redirects=True)
    ) as sandbox:
        port, metrics_port = free_port(), free_port()
        env = settings_env(
            stack=stack,
            database_url=database_url,
            topic_prefix=topic_prefix,
            sandbox=sandbox,
            app=await new_sandbox_app(sandbox, [port]),
            port=port,
            keys=Keys.fresh(),
        )
        settings = Settings.from_env({**env, "METRICS_PORT": str(metrics_port)})
        assert settings.metrics_port == metrics_port
        async with running_auth(settings) as auth, aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                assert r.status == 200
                text = await r.text()
            assert "# TYPE tiktok_outbox_backlog gauge" in text
            async with http.get(f"{auth.base_url}/metrics") as r:
                assert r.status == 404
            async with http.get(f"http://127.0.0.1:{metrics_port}/healthz") as r:
                assert r.status == 404
            async with http.get(f"{auth.base_url}/healthz") as r:
                assert r.status == 200
