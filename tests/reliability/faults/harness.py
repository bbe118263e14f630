"""What the fault runs share: the seed, the media, one run's posts and what an operator can see of
them (``GET /v1/posts``, the status topic, the sandbox's records), and the report file.

Random moments come from ``random.Random(SEED)``. The seed is drawn per session unless
``FAULTS_SEED`` sets it; it is printed at the start of each run, written to the report, and named in
every failed test's report, so ``FAULTS_SEED=<n> pytest <test>`` replays a failing run's schedule.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from common.events import EventType, PostRequestedData, PostStatusData, decode, encode
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, Producer
from common.s3 import S3Error
from tests.publish.harness import make_video
from tests.publish.payloads import post_request
from tests.waiting import wait_for
from tiktok_pipeline.local import LocalPipeline

ROOT = Path(__file__).resolve().parents[3]
REPORT = ROOT / ".stack" / "reports" / "faults.json"
MEDIA_CACHE = ROOT / ".stack" / "reliability-media"
MIB = 1024 * 1024
SOAK = os.environ.get("SOAK") == "1"
TERMINAL = {"published", "inbox_delivered", "failed", "rejected", "cancelled"}
PARTITIONS = 3  # LocalPipeline.create_topics
SEED_ENV = "FAULTS_SEED"


def fault_seed(env: Mapping[str, str]) -> int:
    """``FAULTS_SEED`` when set (an integer a run printed), else a fresh random seed."""
    raw = env.get(SEED_ENV, "").strip()
    if not raw:
        return random.SystemRandom().randrange(1, 2**31)
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(
            f"{SEED_ENV} must be an integer (the seed a fault run printed), not {raw!r}"
        ) from None


SEED = fault_seed(os.environ)


def record(section: str, values: dict[str, Any]) -> None:
    """Write one run's counts to ``.stack/reports/faults.json`` (read by bench/faults_report.py)."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report[section] = values
    REPORT.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------- media


@dataclass(frozen=True)
class Video:
    uri: str
    size: int
    sha256: str


def padded(header: Path, total: int, out: Path) -> Path:
    """A real MP4 followed by a top-level ``free`` box of seeded random bytes up to ``total``:
    probes as a video, any size, the same bytes on every run (so S3 keeps it between runs)."""
    if out.exists() and out.stat().st_size == total:
        return out
    data = header.read_bytes()
    pad = total - len(data)
    rng = random.Random(total)
    tmp = out.with_suffix(".part")
    with tmp.open("wb") as f:
        f.write(data + pad.to_bytes(4, "big") + b"free")
        left = pad - 8
        while left:
            n = min(4 * MIB, left)
            f.write(rng.randbytes(n))
            left -= n
    tmp.rename(out)
    return out


async def upload_once(pipeline: LocalPipeline, path: Path) -> Video:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = f"reliability/{digest[:16]}-{path.name}"
    async with pipeline.object_store() as store:
        try:
            present = (await store.head(pipeline.bucket, key)).size == path.stat().st_size
        except S3Error:
            present = False
        if not present:
            await store.upload_file(path, pipeline.bucket, key)
    return Video(f"s3://{pipeline.bucket}/{key}", path.stat().st_size, digest)


def media_files(small_sizes: list[int], large_sizes: list[int]) -> tuple[list[Path], list[Path]]:
    MEDIA_CACHE.mkdir(parents=True, exist_ok=True)
    base = make_video(MEDIA_CACHE / "base.mp4", seconds=2, size="360x640")
    small = [padded(base, n, MEDIA_CACHE / f"v{n}.mp4") for n in small_sizes]
    large = [padded(base, n, MEDIA_CACHE / f"v{n}.mp4") for n in large_sizes]
    return small, large


# ---------------------------------------------------------------------------------------- a run


@dataclass
class Run:
    pipeline: LocalPipeline
    kafka_bootstrap: str
    accounts: dict[str, str] = field(default_factory=dict)  # account_id -> creator
    posts: dict[str, Video] = field(default_factory=dict)  # post_id -> what it publishes
    producer: Producer | None = None

    async def submit(self, post_id: str, account_id: str, video: Video, publish_at: datetime | None) -> None:
        assert self.producer is not None
        post = PostRequestedData.model_validate(
            post_request(
                post_id,
                video.uri,
                account_id=account_id,
                caption=f"fault run {post_id}",
                publish_at=publish_at,
            )
        )
        value, headers = encode(EventType.post_requested, post, correlation_id=f"corr-{post_id}")
        await self.producer.send(self.pipeline.prefix + TOPIC_POST_REQUESTED, account_id, value, headers)
        self.posts[post_id] = video

    async def post_states(self) -> dict[str, dict[str, Any]]:
        """``GET /v1/posts/{id}`` for every post (what an operator sees)."""
        out: dict[str, dict[str, Any]] = {}
        timeout = aiohttp.ClientTimeout(total=10)
        headers = {"Authorization": f"Bearer {self.pipeline.api_key}"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            for post_id in self.posts:
                async with http.get(f"{self.pipeline.publish_url}/v1/posts/{post_id}") as r:
                    if r.status == 404:
                        continue
                    r.raise_for_status()
                    out[post_id] = await r.json()
        return out

    async def wait_all_terminal(self, timeout: float) -> dict[str, dict[str, Any]]:
        left: dict[str, str] = {}

        async def done() -> bool:
            states = await self.post_states()
            left.clear()
            left.update({p: states.get(p, {}).get("state", "unknown") for p in self.posts})
            for post_id, state in list(left.items()):
                if state in TERMINAL:
                    del left[post_id]
            return not left

        try:
            await wait_for(done, timeout, 1.0, ignore=(aiohttp.ClientError, TimeoutError))
        except AssertionError as exc:
            raise AssertionError(f"posts not terminal after {timeout:g}s: {left}") from exc
        return await self.post_states()

    async def sandbox(self, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(f"{self.pipeline.sandbox_url}{path}") as r:
            r.raise_for_status()
            return await r.json()

    async def status_events(self) -> dict[str, list[tuple[str, PostStatusData]]]:
        """Every status event on the topic, by post: (event_id, data) in offset order per partition."""
        topic = self.pipeline.prefix + TOPIC_POST_STATUS
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        events: dict[str, list[tuple[str, PostStatusData]]] = defaultdict(list)
        try:
            parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in parts])

            while await behind():
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        envelope = decode(r.value, PostStatusData)
                        events[envelope.data.post_id].append((str(envelope.event_id), envelope.data))
        finally:
            await consumer.stop()
        return events

    async def accounts_status(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.pipeline.api_key}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.pipeline.auth_url}/v1/accounts", headers=headers) as r,
        ):
            r.raise_for_status()
            body = await r.json()
        return {a["id"]: a["status"] for a in body["accounts"]}


async def wait_accounts_known(pipeline: LocalPipeline, accounts: list[str]) -> None:
    """Until publish_service has read every account's connect event from Kafka. A post for an account
    it has not seen yet is rejected (unknown_account): see the fault-tolerance notes."""
    conn = await asyncpg.connect(pipeline.database_url, timeout=10)
    try:

        async def known() -> bool:
            rows = await conn.fetch("SELECT account_id FROM publish.accounts")
            return {r["account_id"] for r in rows} >= set(accounts)

        await wait_for(known, 60, 0.1, description="publish_service knowing the connected accounts")
    finally:
        await conn.close()


async def sandbox_post(pipeline: LocalPipeline, path: str, body: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as http, http.post(f"{pipeline.sandbox_url}{path}", json=body) as r:
        r.raise_for_status()
        return await r.json()


async def token_calls(pipeline: LocalPipeline) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{pipeline.sandbox_url}/_sandbox/calls") as r:
        calls = await r.json()
    return sum(c["calls"] for c in calls["calls"] if c["endpoint"] == "/v2/oauth/token/")


async def post_progress(pipeline: LocalPipeline, post_id: str) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {pipeline.api_key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{pipeline.publish_url}/v1/posts/{post_id}") as r,
    ):
        return await r.json() if r.status == 200 else None
