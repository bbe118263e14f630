"""With METRICS_PORT set, publish_service serves /metrics there and not on its HTTP port."""

from __future__ import annotations

import aiohttp
import pytest

from tests.publish.harness import Harness, running_service
from tiktok_pipeline.local import free_port

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def test_metrics_on_their_own_port(harness: Harness) -> None:
    metrics_port = free_port()
    settings = harness.settings(METRICS_PORT=str(metrics_port))
    async with running_service(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            text = await r.text()
        assert "# TYPE tiktok_outbox_backlog gauge" in text
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 404
        # The metrics port serves nothing else.
        for path in ("/healthz", "/readyz", "/v1/posts"):
            async with http.get(f"http://127.0.0.1:{metrics_port}{path}") as r:
                assert r.status == 404, path
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200


async def test_metrics_stay_on_the_http_port_without_the_setting(harness: Harness) -> None:
    async with (
        running_service(harness.settings()) as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}/metrics") as r,
    ):
        assert r.status == 200
        assert "tiktok_posts_in_state" in await r.text()
