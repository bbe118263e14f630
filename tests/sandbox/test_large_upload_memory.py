"""A 300 MB upload in 10 MiB chunks through `python -m tiktok_sandbox`, whose peak RSS stays under 100 MB.

Neither side holds the video: the test generates each piece on the fly and hashes it while sending;
the sandbox streams it to disk and hashes it as it arrives. Introspection must report the same SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VIDEO_SIZE = 300_000_000
CHUNK = 10 * 1024 * 1024
PIECE = 256 * 1024
RSS_LIMIT_KB = 100 * 1024


def piece(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (PIECE // 32)


def vm_kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


async def test_300mb_upload_keeps_sandbox_rss_under_100mb(tmp_path):
    config = tmp_path / "sandbox.json"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "data"),
                "apps": [{"client_key": "rsstest", "client_secret": "rss-secret"}],
                "creators": [{"username": "big"}],
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiktok_sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--config",
        str(config),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        base = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
        async with aiohttp.ClientSession(trust_env=False) as http:
            async with http.post(
                f"{base}/_sandbox/tokens", json={"client_key": "rsstest", "creator": "big"}
            ) as r:
                token = (await r.json())["access_token"]
            total = VIDEO_SIZE // CHUNK
            body = {
                "post_info": {"privacy_level": "SELF_ONLY"},
                "source_info": {
                    "source": "FILE_UPLOAD",
                    "video_size": VIDEO_SIZE,
                    "chunk_size": CHUNK,
                    "total_chunk_count": total,
                },
            }
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{base}/v2/post/publish/video/init/", json=body, headers=headers) as r:
                data = (await r.json())["data"]
            baseline_kb = vm_kb(proc.pid, "VmRSS")

            sent = hashlib.sha256()
            counter = iter(range(10**9))

            async def chunk_body(length: int):
                remaining = length
                while remaining:
                    part = piece(next(counter))[: min(PIECE, remaining)]
                    sent.update(part)
                    remaining -= len(part)
                    yield part

            started = time.monotonic()
            statuses = []
            for i in range(total):
                first = i * CHUNK
                length = VIDEO_SIZE - first if i == total - 1 else CHUNK
                put_headers = {
                    "Content-Type": "video/mp4",
                    "Content-Length": str(length),
                    "Content-Range": f"bytes {first}-{first + length - 1}/{VIDEO_SIZE}",
                }
                async with http.put(data["upload_url"], data=chunk_body(length), headers=put_headers) as r:
                    statuses.append(r.status)
            elapsed = time.monotonic() - started
            peak_kb = vm_kb(proc.pid, "VmHWM")

            async with http.get(f"{base}/_sandbox/posts/{data['publish_id']}") as r:
                post = await r.json()
        print(
            f"\n300 MB upload: {elapsed:.1f}s, sandbox RSS baseline {baseline_kb / 1024:.1f} MiB, "
            f"peak (VmHWM) {peak_kb / 1024:.1f} MiB"
        )
        assert statuses == [206] * (total - 1) + [201]
        assert post["size"] == VIDEO_SIZE
        assert post["sha256"] == sent.hexdigest()
        assert peak_kb < RSS_LIMIT_KB, f"sandbox peak RSS {peak_kb} kB"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
