# ruff: noqa: T201, S603, ASYNC220, ASYNC240  (a command-line benchmark: prints a table, runs our own processes)
"""FILE_UPLOAD throughput and memory of publish_service: one video at a time, several sizes.

    python bench/publish_upload.py [--sizes-mb 100,500,1000] [--chunk-mib 10]
                                   [--concurrent 50] [--concurrent-size-mb 200] [--pairs 3]
                                   [--service-root DIR ...]

Real pieces only: Kafka, PostgreSQL and S3 from the local stack (the environment, else ``.stack/env``),
the TikTok sandbox as its own process (it hashes every byte it receives and keeps none), and
publish_service as its own ``python -m publish_service`` process (one worker for the single uploads,
one per video for the concurrent ones), so its memory is measured alone. Each video is
a real MP4 header followed by random bytes, streamed into S3 first. For each size the table shows the
upload time (from the ``uploading`` status event to ``processing``), MB/s, and the service's peak
resident memory sampled every 20 ms during that upload. Flat memory across sizes is the point: each
chunk is streamed from a ranged S3 GET straight into the PUT, never held whole.

Each upload is printed beside the plain copy (``bench/plain_copy.py``) of the same objects; the
concurrent uploads run ``--pairs`` times, the plain copy first in one pair and second in the next
(this machine is noisy: read the median of the pairs' ratios). Beside the rates, the CPU time each
copier spent per GB (the service process from ``/proc``, the plain copy's own process from
``time.process_time``): on these 2 busy cores that, more than the rate, is what the two differ by.
``--service-root`` runs the service from another checkout (e.g. a worktree of an earlier commit);
given more than once, the checkouts take turns at each pair, on the same staged videos.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plain_copy import Copied, Sink, copy_objects, verify, wait_answering  # noqa: E402

from common.kafka import standard_topics  # noqa: E402
from common.s3 import ObjectStore  # noqa: E402
from tests.conftest import (  # noqa: E402
    StackEndpoints,
    _parse_env_file,
    create_test_database,
    drop_test_database,
)
from tests.publish.harness import Harness, Uploaded, make_video, new_transport_key  # noqa: E402
from tests.publish.payloads import post_request  # noqa: E402
from tiktok_pipeline.local import free_port  # noqa: E402
from tiktok_sandbox.testing import RunningSandbox, SandboxControl  # noqa: E402

MB = 1000 * 1000
MIB = 1024 * 1024


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


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_peak(pid: int, stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.02)
    return peak


@contextlib.asynccontextmanager
async def sandbox_process(work: Path) -> AsyncIterator[RunningSandbox]:
    """The sandbox as its own process, as the plain copy's sink is: neither receiver shares a core
    with this script's Kafka consumer. Like the sink it hashes every byte it receives and writes
    nothing to disk (``keep_media: false``)."""
    port = free_port()
    config = work / "sandbox.json"
    config.write_text(
        json.dumps({"data_dir": str(work / "sandbox"), "processing_min_s": 0.5, "keep_media": False})
    )
    with (work / "sandbox.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tiktok_sandbox", "--host", "127.0.0.1", "--port", str(port),
             "--config", str(config)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_answering(f"{base_url}/_sandbox/health", 200, f"the sandbox (see {work / 'sandbox.log'})")
        async with aiohttp.ClientSession(trust_env=False) as session:
            # Only base_url and control are used here; the app object is the in-process sandbox's.
            yield RunningSandbox(
                base_url=base_url, control=SandboxControl(base_url, session), app=web.Application()
            )
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


@contextlib.asynccontextmanager
async def service(
    h: Harness, work: Path, workers: int, chunk_mib: int, root: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """publish_service (from the checkout ``root``) as its own process with ``workers`` workers,
    stopped on leaving."""
    env = {**os.environ, **h.env(PUBLISH_WORKERS=str(workers), PUBLISH_CHUNK_SIZE=str(chunk_mib * MIB),
                                 LOG_LEVEL="WARNING"), "PYTHONPATH": str(root)}  # fmt: skip
    with (work / "service.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "publish_service"], env=env, cwd=root,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        await asyncio.sleep(3)  # settle before the idle RSS is read
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)


async def upload(h: Harness, posts: list[tuple[str, str, Uploaded]], pid: int) -> tuple[float, int, float]:
    """Request every ``(post_id, account_id, video)`` at once; the seconds from the first ``uploading``
    to the last ``processing`` (the service's own stamps), the peak RSS (KiB) meanwhile, and the CPU
    seconds the service spent from the requests to the last ``processing``. Checks the bytes TikTok
    got, then waits for each post to be published and deletes the sandbox's copy."""
    cpu_before = cpu_s(pid)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak(pid, stop))
    for post_id, account_id, video in posts:
        await h.request_post(post_request(post_id, video.uri, account_id=account_id))
    starts, ends = [], []
    for post_id, _, _ in posts:
        uploading = await h.wait_state(post_id, "uploading", timeout=300)
        starts.append(h.log.occurred_at[(post_id, uploading.seq)])
    done = {}
    for post_id, _, _ in posts:
        done[post_id] = await h.wait_state(post_id, "processing", timeout=1800)
        ends.append(h.log.occurred_at[(post_id, done[post_id].seq)])
    cpu = cpu_s(pid) - cpu_before
    stop.set()
    peak = await sampler
    if len(posts) > 1:
        started, ended = sorted(starts), sorted(ends)
        print(
            f"    uploads started over {(started[-1] - started[0]).total_seconds():.1f} s"
            f" (median {(started[len(started) // 2] - started[0]).total_seconds():.1f} s),"
            f" ended over {(ended[-1] - ended[0]).total_seconds():.1f} s",
            flush=True,
        )
    for post_id, _, video in posts:
        posted = await h.sandbox.control.post(done[post_id].publish_id or "")
        if posted["sha256"] != video.sha256:
            raise SystemExit(f"bytes at the sandbox differ for {post_id}")
        await h.wait_state(post_id, "published", timeout=600)
        for f in posted["files"]:
            with contextlib.suppress(OSError):
                Path(f["path"]).unlink()
    return (max(ends) - min(starts)).total_seconds(), peak, cpu


async def plain(
    h: Harness, sink: Sink, videos: list[Uploaded], chunk_mib: int, run: str
) -> tuple[Copied, float]:
    """The plain copy of ``videos`` and the CPU seconds this process spent on it."""
    objects = [(v.uri.split("/", 3)[3], v.size) for v in videos]
    cpu_before = time.process_time()
    copied = await copy_objects(h.store, sink, h.bucket, objects, chunk_mib * MIB, run)
    cpu = time.process_time() - cpu_before
    await verify(sink, run, [(v.size, v.sha256) for v in videos])
    return copied, cpu


@dataclass(frozen=True)
class Row:
    root: Path  # the checkout the service ran from
    label: str
    seconds: float
    rate: float  # the service's MB/s
    copy_rate: float  # the plain copy's MB/s
    peak_mib: float
    cpu_per_gb: float  # the service's CPU seconds per GB
    copy_cpu_per_gb: float

    @property
    def ratio(self) -> float:
        return self.rate / self.copy_rate


def say(row: Row, note: str = "") -> None:
    print(
        f"  {row.label}{note}: service {row.rate:.0f} MB/s ({row.cpu_per_gb:.2f} CPU s/GB),"
        f" plain copy {row.copy_rate:.0f} MB/s ({row.copy_cpu_per_gb:.2f} CPU s/GB)",
        flush=True,
    )


async def main(
    sizes_mb: list[int],
    concurrent: int,
    concurrent_size_mb: int,
    chunk_mib: int,
    pairs: int,
    service_roots: list[Path],
) -> None:
    endpoints = stack()
    database_url = await create_test_database(endpoints.database_url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    work = Path(tempfile.mkdtemp(prefix="publish-bench-"))
    async with sandbox_process(work) as sandbox, Sink() as sink:
        tiktok_app = await sandbox.control.create_app()
        h = Harness(
            stack=endpoints, database_url=database_url, topic_prefix=prefix, bucket=bucket, sandbox=sandbox,
            tiktok_app=tiktok_app, transport_key=new_transport_key(),
        )  # fmt: skip
        h.store = ObjectStore(
            endpoint_url=endpoints.s3_endpoint_url, access_key_id=endpoints.s3_access_key_id,
            secret_access_key=endpoints.s3_secret_access_key, region=endpoints.s3_region,
            max_pool_connections=max(20, concurrent * 2),
        )  # fmt: skip
        await h.start()
        await h.store.client.create_bucket(Bucket=bucket)
        try:
            # The last account posts the singles, so no account nears the sandbox's init rate limit.
            accounts = [f"bench-{i}" for i in range(concurrent + 1)]
            for account in accounts:
                await sandbox.control.create_creator(account, max_video_post_duration_sec=600)
                await h.connect_account(account, account)
            header = make_video(work / "header.mp4")
            t0 = time.monotonic()
            singles = [
                await h.put_padded_video(f"v{n}-{size}.mp4", header, size * MB)
                for n, size in enumerate(sizes_mb)
            ]
            many = [
                await h.put_padded_video(f"c{i}.mp4", header, concurrent_size_mb * MB)
                for i in range(concurrent)
            ]
            staged = len(singles) + len(many)
            print(f"staged {staged} videos in S3 in {time.monotonic() - t0:.0f} s", flush=True)

            rows: list[Row] = []
            idle: dict[Path, float] = {}
            for r, root in enumerate(service_roots):
                async with service(h, work, 1, chunk_mib, root) as process:
                    idle[root] = rss_kib(process.pid) / 1024
                    for n, (size, video) in enumerate(zip(sizes_mb, singles, strict=True)):
                        copied, copy_cpu = await plain(h, sink, [video], chunk_mib, f"single{n}-{r}")
                        post_id = f"bench-{root.name}-{n}-{size}"
                        seconds, peak, cpu = await upload(h, [(post_id, accounts[-1], video)], process.pid)
                        gb = video.size / 1e9
                        rows.append(Row(root, f"1 x {size} MB", seconds, video.size / MB / seconds,
                                        copied.mb_per_s, peak / 1024, cpu / gb, copy_cpu / gb))  # fmt: skip
                        say(rows[-1])
            for p in range(pairs if concurrent else 0):
                # Alternate which copy goes first, so neither always gets the warmer caches; with several
                # checkouts, each runs its pair in turn.
                service_first = p % 2 == 1
                for r, root in enumerate(service_roots):
                    run = f"concurrent{p}-{r}"  # the sink keeps each run's bytes apart
                    async with service(h, work, concurrent, chunk_mib, root) as process:
                        if not service_first:
                            copied, copy_cpu = await plain(h, sink, many, chunk_mib, run)
                        posts = [(f"bench-{root.name}-c{p}-{i}", accounts[i], v) for i, v in enumerate(many)]
                        seconds, peak, cpu = await upload(h, posts, process.pid)
                        if service_first:
                            copied, copy_cpu = await plain(h, sink, many, chunk_mib, run)
                    total = sum(v.size for v in many)
                    gb = total / 1e9
                    label = f"{concurrent} x {concurrent_size_mb} MB"
                    rows.append(Row(root, label, seconds, total / MB / seconds, copied.mb_per_s, peak / 1024,
                                    cpu / gb, copy_cpu / gb))  # fmt: skip
                    say(rows[-1], f" (pair {p + 1}/{pairs})")
            for root in service_roots:
                print()
                print(f"publish_service from {root}")
                print(f"FILE_UPLOAD, chunk {chunk_mib} MiB; idle RSS (1 worker) {idle[root]:.0f} MiB")
                print(f"{'videos':>14} {'seconds':>8} {'MB/s':>7} {'vs plain copy':>14} {'peak RSS MiB':>13}"
                      f" {'CPU s/GB':>9} {'copy CPU s/GB':>14}")  # fmt: skip
                for r in (r for r in rows if r.root == root):
                    print(
                        f"{r.label:>14} {r.seconds:>8.1f} {r.rate:>7.1f} {r.ratio:>14.2f}"
                        f" {r.peak_mib:>13.0f} {r.cpu_per_gb:>9.2f} {r.copy_cpu_per_gb:>14.2f}"
                    )
                many_rows = [r for r in rows if r.root == root and r.label.startswith(f"{concurrent} x")]
                if many_rows:
                    median = statistics.median(r.ratio for r in many_rows)
                    cpu = statistics.median(r.cpu_per_gb for r in many_rows)
                    cpu_ratio = statistics.median(r.cpu_per_gb / r.copy_cpu_per_gb for r in many_rows)
                    print(f"{concurrent} concurrent, median of {len(many_rows)} pairs: ratio {median:.2f},"
                          f" CPU {cpu:.2f} s/GB, {cpu_ratio:.2f} x the plain copy's")  # fmt: skip
            print("bytes verified by SHA-256 at the sandbox and at the plain copy's sink for every video")
        finally:
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
    parser.add_argument("--sizes-mb", default="100,500,1000", help="single uploads, one after another")
    parser.add_argument("--concurrent", type=int, default=50, help="uploads side by side (0: none)")
    parser.add_argument("--concurrent-size-mb", type=int, default=200)
    parser.add_argument("--chunk-mib", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3, help="concurrent: plain copy and service, alternated")
    parser.add_argument(
        "--service-root",
        type=Path,
        action="append",
        help="the checkout to run the service from (this one by default); repeat to compare, in turn",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mb.split(",") if s]
    roots = [r.resolve() for r in args.service_root or [ROOT]]
    asyncio.run(main(sizes, args.concurrent, args.concurrent_size_mb, args.chunk_mib, args.pairs, roots))
