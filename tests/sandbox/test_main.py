"""`python -m tiktok_sandbox`: starts from a JSON seed, answers /healthz, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def test_main_serves_the_seeded_app_and_stops_on_sigterm(tmp_path):
    config = tmp_path / "seed.json"
    config.write_text(json.dumps({"creators": [{"username": "demo"}], "auto_approve": True}))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TIKTOK_SANDBOX_APPS": json.dumps(
            [
                {
                    "client_key": "demo",
                    "client_secret": "demo-secret",
                    "redirect_uris": ["https://app.example/cb"],
                }
            ]
        ),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiktok_sandbox", "--port", "0", "--config", str(config),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        base = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
        async with aiohttp.ClientSession(trust_env=False) as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["ok"]
            params = {
                "client_key": "demo",
                "scope": "user.info.basic",
                "response_type": "code",
                "redirect_uri": "https://app.example/cb",
                "state": "s",
            }
            async with http.get(f"{base}/v2/auth/authorize/", params=params, allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith("https://app.example/cb?code=")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
