# ruff: noqa: T201, ASYNC220, S603  (a command-line benchmark: prints a table, runs our own process)
"""Intake throughput and event -> first byte latency of publish_service, as its own process.

    python bench/publish_flow.py [--requests 20000] [--accounts 20] [--latency-posts 10] [--runs 1]
                                 [--service-root DIR] [--profile FILE]

Real pieces only: Kafka, PostgreSQL and S3 from the local stack (the environment, else ``.stack/env``),
the TikTok sandbox in this process, publish_service as ``python -m publish_service`` (4 workers).

Intake: ``--requests`` post requests spread round-robin over ``--accounts`` accounts (keyed by account,
so over the topic's partitions as real traffic is), each scheduled a day ahead so that intake's work
(``received`` then ``scheduled`` status events) is all that happens. They are put on the topic before
the service starts; the figure is requests / (the last request's ``scheduled`` event read back from
the status topic - the first status event's ``occurred_at``).

Latency: then, one at a time, ``--latency-posts`` one-chunk video posts: from the moment Kafka
acknowledged the request to the moment the sandbox's upload endpoint received the chunk PUT (its
request line; the body follows on the same connection), p50 and p95.

``--service-root`` runs the service from another checkout (e.g. an export of main) for a baseline in
the same conditions. The machine may be shared: run it a few times and quote medians and ranges.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publish_upload import _cleanup, stack  # noqa: E402

from common.events import EventType, PostRequestedData, encode  # noqa: E402
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, OutgoingMessage  # noqa: E402
from tests.conftest import create_test_database, drop_test_database  # noqa: E402
from tests.publish.harness import PARTITIONS, Harness, make_video, new_transport_key  # noqa: E402
from tests.publish.payloads import post_request  # noqa: E402
from tests.waiting import wait_for  # noqa: E402
from tiktok_sandbox.app import create_app  # noqa: E402
from tiktok_sandbox.config import SandboxConfig  # noqa: E402
from tiktok_sandbox.testing import RunningSandbox, SandboxControl  # noqa: E402

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FirstBytes:
    """When the sandbox received each chunk PUT (wall clock), in arrival order."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "PUT":  # only chunk uploads are PUTs
            self.times.append(time.time())
        return await handler(request)


@contextlib.asynccontextmanager
async def sandbox_with(config: SandboxConfig, first: FirstBytes) -> AsyncIterator[RunningSandbox]:
    import aiohttp

    app = create_app(config)
    app.middlewares.insert(0, first.middleware)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession(trust_env=False) as session:
            yield RunningSandbox(base_url=base, control=SandboxControl(base, session), app=app)
    finally:
        await runner.cleanup()


class StatusCounter:
    """Reads the status topic: which posts' ``scheduled`` events arrived (the last when), the first's time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.scheduled: set[str] = set()
        self.first_occurred: datetime | None = None
        self.last_seen = 0.0

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            while True:
                batch = await consumer.getmany(timeout_ms=100, max_records=5000)
                for records in batch.values():
                    for r in records:
                        event = json.loads(r.value)
                        occurred = datetime.fromisoformat(event["occurred_at"])
                        if self.first_occurred is None or occurred < self.first_occurred:
                            self.first_occurred = occurred
                        if event["data"]["state"] == "scheduled":
                            self.scheduled.add(event["data"]["post_id"])
                            self.last_seen = time.time()
        finally:
            await consumer.stop()


async def produce_requests(h: Harness, count: int, accounts: list[str], uri: str) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    topic = h.topic(TOPIC_POST_REQUESTED)
    messages = []
    for i in range(count):
        account = accounts[i % len(accounts)]
        post = PostRequestedData.model_validate(
            post_request(f"in-{i}", uri, account_id=account, publish_at=later)
        )
        value, headers = encode(EventType.post_requested, post, correlation_id=f"corr-{i}")
        messages.append(OutgoingMessage(topic, account.encode(), value, headers))
    for start in range(0, count, 2000):
        results = await h.producer.send_batch_settled(messages[start : start + 2000])
        failed = [r for r in results if not hasattr(r, "offset")]
        if failed:
            raise SystemExit(f"could not produce the requests: {failed[0]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (a figure the shared machine's load disturbs less)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_run(args: argparse.Namespace) -> tuple[float, list[float]]:
    endpoints = stack()
    database_url = await create_test_database(endpoints.database_url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    work = Path(tempfile.mkdtemp(prefix="publish-flow-"))
    first = FirstBytes()
    config = SandboxConfig(data_dir=str(work / "sandbox"), processing_min_s=0.5)
    async with sandbox_with(config, first) as sandbox:
        tiktok_app = await sandbox.control.create_app()
        h = Harness(
            stack=endpoints, database_url=database_url, topic_prefix=prefix, bucket=bucket, sandbox=sandbox,
            tiktok_app=tiktok_app, transport_key=new_transport_key(),
        )  # fmt: skip
        await h.start()
        await h.store.client.create_bucket(Bucket=bucket)
        counter = StatusCounter(endpoints.kafka_bootstrap, h.topic(TOPIC_POST_STATUS))
        reader = asyncio.create_task(counter.run())
        process: subprocess.Popen[bytes] | None = None
        try:
            accounts = [f"acc-{n}" for n in range(args.accounts)]
            for n, account in enumerate(accounts):
                await sandbox.control.create_creator(f"creator{n}")
                await h.connect_account(account, f"creator{n}")
            video = await h.put_file("v.mp4", make_video(work / "v.mp4"))
            await produce_requests(h, args.requests, accounts, video.uri)
            print(f"{args.requests} requests on the topic; starting the service", flush=True)
            env = {**os.environ, **h.env(PUBLISH_WORKERS="4", LOG_LEVEL=args.log_level)}
            env["PYTHONPATH"] = str(args.service_root)
            with (work / "service.log").open("ab") as log:
                profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
                command = [sys.executable, *profile, "-m", "publish_service"]
                process = subprocess.Popen(
                    command, env=env, cwd=args.service_root, stdout=log, stderr=subprocess.STDOUT
                )
            cpu_at_start = cpu_seconds(process.pid)
            await wait_for(
                lambda: len(counter.scheduled) >= args.requests, 600, 0.2, description="every scheduled event"
            )
            if counter.first_occurred is None:
                raise SystemExit("no status event was read")
            seconds = counter.last_seen - counter.first_occurred.timestamp()
            rate = args.requests / seconds
            cpu = cpu_seconds(process.pid) - cpu_at_start
            print(
                f"intake: {args.requests} requests durable in {seconds:.1f} s = {rate:.0f} /s;"
                f" service CPU {cpu:.1f} s = {cpu * 1e6 / args.requests:.0f} us per request",
                flush=True,
            )

            latencies = []
            for i in range(args.latency_posts):
                seen = len(first.times)
                fields = post_request(f"lat-{i}", video.uri, account_id=accounts[i % len(accounts)])
                post = PostRequestedData.model_validate(fields)
                value, headers = encode(EventType.post_requested, post)
                await h.producer.send(h.topic(TOPIC_POST_REQUESTED), post.account_id, value, headers)
                written = time.time()
                await wait_for(lambda seen=seen: len(first.times) > seen, 60, 0.005, description="chunk PUT")  # type: ignore[misc]
                latencies.append((first.times[seen] - written) * 1000)
                await h.wait_state(f"lat-{i}", "processing", timeout=60)
            p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
            each = ", ".join(f"{x:.0f}" for x in latencies)
            print(f"event -> first byte: p50 {p50:.0f} ms, p95 {p95:.0f} ms ({each})", flush=True)
            return rate, latencies
        finally:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(30)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await h.stop()
            await drop_test_database(endpoints.database_url, database_url)
            await _cleanup(endpoints, prefix, bucket, h)


async def main(args: argparse.Namespace) -> None:
    rates, p50s = [], []
    for _ in range(args.runs):
        rate, latencies = await one_run(args)
        rates.append(rate)
        p50s.append(percentile(latencies, 0.5))
    print()
    print(f"service from {args.service_root}, {args.runs} run(s)")
    print(f"intake req/s: median {statistics.median(rates):.0f} (range {min(rates):.0f}-{max(rates):.0f})")
    p50 = statistics.median(p50s)
    print(f"event -> first byte p50 ms: median {p50:.0f} (range {min(p50s):.0f}-{max(p50s):.0f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--latency-posts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--service-root", type=Path, default=ROOT)
    parser.add_argument("--profile", type=Path, help="run the service under cProfile, writing here")
    asyncio.run(main(parser.parse_args()))
