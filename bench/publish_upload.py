# ruff: noqa: T201, ASYNC220, ASYNC240  (a command-line benchmark: prints a table, runs our own process)
"""FILE_UPLOAD throughput and memory of publish_service: one video at a time, several sizes.

    python bench/publish_upload.py [--sizes-mb 100,500,1000] [--chunk-mib 10]

Real pieces only: Kafka, PostgreSQL and S3 from the local stack (the environment, else ``.stack/env``),
the TikTok sandbox in this process (it hashes every byte it receives), and publish_service as its own
``python -m publish_service`` process with one worker, so its memory is measured alone. Each video is
a real MP4 header followed by random bytes, streamed into S3 first. For each size the table shows the
upload time (from the ``uploading`` status event to ``processing``), MB/s, and the service's peak
resident memory sampled every 20 ms during that upload. Flat memory across sizes is the point: each
chunk is streamed from a ranged S3 GET straight into the PUT, never held whole.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.kafka import standard_topics  # noqa: E402
from tests.conftest import (  # noqa: E402
    StackEndpoints,
    _parse_env_file,
    create_test_database,
    drop_test_database,
)
from tests.publish.harness import Harness, make_video, new_transport_key  # noqa: E402
from tests.publish.payloads import post_request  # noqa: E402
from tiktok_sandbox.config import SandboxConfig  # noqa: E402
from tiktok_sandbox.testing import run_sandbox  # noqa: E402

MB = 1000 * 1000


def stack() -> StackEndpoints:
    env = dict(os.environ)
    if not env.get("DATABASE_URL"):
        env.update(_parse_env_file(ROOT / ".stack" / "env"))
    return StackEndpoints(
        kafka_bootstrap=env["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=env["DATABASE_URL"],
        s3_endpoint_url=env["S3_ENDPOINT_URL"],
        s3_access_key_id=env.get("S3_ACCESS_KEY_ID", "tiktok-local"),
        s3_secret_access_key=env.get("S3_SECRET_ACCESS_KEY", "tiktok-local-secret"),
        s3_region=env.get("S3_REGION", "us-east-1"),
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sample_peak(pid: int, stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.02)
    return peak


async def main(sizes_mb: list[int], chunk_mib: int) -> None:
    endpoints = stack()
    database_url = await create_test_database(endpoints.database_url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    work = Path(tempfile.mkdtemp(prefix="publish-bench-"))
    async with run_sandbox(SandboxConfig(data_dir=str(work / "sandbox"), processing_min_s=0.5)) as sandbox:
        tiktok_app = await sandbox.control.create_app()
        await sandbox.control.create_creator("bench", max_video_post_duration_sec=600)
        h = Harness(
            stack=endpoints, database_url=database_url, topic_prefix=prefix, bucket=bucket, sandbox=sandbox,
            tiktok_app=tiktok_app, transport_key=new_transport_key(),
        )  # fmt: skip
        await h.start()
        await h.store.client.create_bucket(Bucket=bucket)
        process: subprocess.Popen[bytes] | None = None
        try:
            await h.connect_account("bench-acc", "bench")
            header = make_video(work / "header.mp4")
            videos = []
            for size in sizes_mb:
                t0 = time.monotonic()
                videos.append(await h.put_padded_video(f"v{size}.mp4", header, size * MB))
                print(f"staged {size} MB in S3 in {time.monotonic() - t0:.1f} s", flush=True)
            env = {**os.environ, **h.env(PUBLISH_WORKERS="1", PUBLISH_CHUNK_SIZE=str(chunk_mib * 1024 * 1024),
                                         LOG_LEVEL="WARNING")}  # fmt: skip
            with (work / "service.log").open("ab") as log:
                process = subprocess.Popen([sys.executable, "-m", "publish_service"], env=env, cwd=ROOT,
                                           stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            await asyncio.sleep(3)
            baseline = rss_kib(process.pid)
            rows: list[tuple[Any, ...]] = []
            for size, video in zip(sizes_mb, videos, strict=True):
                post_id = f"bench-{size}"
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_peak(process.pid, stop))
                await h.request_post(post_request(post_id, video.uri, account_id="bench-acc"))
                uploading = await h.wait_state(post_id, "uploading", timeout=120)
                done = await h.wait_state(post_id, "processing", timeout=1800)
                # Both stamps are taken by the service when it commits the transition.
                seconds = (
                    h.log.occurred_at[(post_id, done.seq)] - h.log.occurred_at[(post_id, uploading.seq)]
                ).total_seconds()
                stop.set()
                peak = await sampler
                posted = await sandbox.control.post(done.publish_id or "")
                if posted["sha256"] != video.sha256:
                    raise SystemExit(f"bytes at the sandbox differ for {size} MB")
                rows.append((size, seconds, video.size / MB / seconds, peak / 1024))
                await h.wait_state(post_id, "published", timeout=600)
                for f in posted["files"]:
                    with contextlib.suppress(OSError):
                        Path(f["path"]).unlink()
            print()
            idle = baseline / 1024
            print(f"publish_service FILE_UPLOAD, chunk {chunk_mib} MiB, 1 worker; RSS at idle {idle:.0f} MiB")
            print(f"{'video MB':>9} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13}")
            for size, seconds, rate, peak_mib in rows:
                print(f"{size:>9} {seconds:>8.1f} {rate:>7.1f} {peak_mib:>13.0f}")
            print("bytes verified by SHA-256 at the sandbox for every size")
        finally:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(30)
            await h.stop()
            await drop_test_database(endpoints.database_url, database_url)
            await _cleanup(endpoints, prefix, bucket, h)


async def _cleanup(endpoints: StackEndpoints, prefix: str, bucket: str, h: Harness) -> None:
    from common.kafka.clients import new_admin

    admin = new_admin(endpoints.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([s.name for s in standard_topics(prefix).values()])
    except Exception as exc:  # noqa: BLE001 - best effort
        print(f"(topics left behind: {exc})")
    finally:
        await admin.close()
    await h.store.start()
    try:
        for key in [
            o["Key"] for o in (await h.store.client.list_objects_v2(Bucket=bucket)).get("Contents", [])
        ]:
            await h.store.delete(bucket, key)
        await h.store.client.delete_bucket(Bucket=bucket)
    finally:
        await h.store.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes-mb", default="100,500,1000")
    parser.add_argument("--chunk-mib", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes_mb.split(",")], args.chunk_mib))
