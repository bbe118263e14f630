"""The guarantees of DESIGN.md under failures, end to end, with the services as real processes.

1. Process and server faults: 100 posts (4 creators; 1-6 MB videos and ten 70 MB ones in 5 MiB
   chunks) while publish_service is SIGKILLed 12 times (half at random moments, half the moment a
   post is part-way through its upload), auth_service is SIGKILLed
   in the middle of token refreshes (60 s access tokens), a dedicated Kafka broker is stopped and
   started, and a dedicated PostgreSQL is crashed and started. Afterwards: every post terminal; each
   published post at the sandbox exactly once with the source's bytes; every state change on the
   status topic (seq 1..n per post, ending in the terminal state); no account lost; TikTok's
   per-token limits held.
2. Network faults between the services and TikTok, through tests/reliability/proxy.py: latency and
   connections cut mid-stream, then a peer that accepts and never answers (the calls must time
   out, and the posts complete once the stall is lifted).

Random moments come from ``random.Random(seed)``; the seed is printed (``FAULTS_SEED=<n>`` replays
it). ``SOAK=1`` runs a longer variant (more posts, more kills). Counts go to
``.stack/reports/faults.json``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from common.events import EventType, PostRequestedData, PostStatusData, decode, encode
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, Producer
from common.s3 import S3Error
from common.settings import EnvReader
from common.tiktok.client import TikTokClient
from common.tiktok.errors import TikTokTransportError
from tests.auth.kafka_instance import KafkaInstance
from tests.publish.harness import make_video
from tests.reliability.pg_instance import PgInstance
from tests.reliability.proxy import FaultyProxy
from tests.waiting import WaitTimeout, wait_for
from tiktok_pipeline.local import LocalPipeline

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / ".stack" / "reports" / "faults.json"
MEDIA_CACHE = ROOT / ".stack" / "reliability-media"
MIB = 1024 * 1024
SOAK = os.environ.get("SOAK") == "1"
SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1, 2**31))
TERMINAL = {"published", "inbox_delivered", "failed", "rejected", "cancelled"}
RATE_WINDOW_S = 10.0
PARTITIONS = 3  # LocalPipeline.create_topics


def _record(section: str, values: dict[str, Any]) -> None:
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


def _padded(header: Path, total: int, out: Path) -> Path:
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


async def _upload_once(pipeline: LocalPipeline, path: Path) -> Video:
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
    small = [_padded(base, n, MEDIA_CACHE / f"v{n}.mp4") for n in small_sizes]
    large = [_padded(base, n, MEDIA_CACHE / f"v{n}.mp4") for n in large_sizes]
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
            {
                "post_id": post_id,
                "account_id": account_id,
                "kind": "video",
                "mode": "direct",
                "video": {"uri": video.uri},
                "caption": f"fault run {post_id}",
                "privacy_level": "SELF_ONLY",
                "publish_at": publish_at,
            }
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


@dataclass
class Verdict:
    posts: int
    published: int
    failed: dict[str, str]
    losses: list[str]
    duplicates: dict[str, int]
    wrong_bytes: list[str]
    event_gaps: dict[str, str]
    abandoned_inits: int
    limits_exceeded: list[str]
    rate_limited_total: int
    reauth_required: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "published": self.published,
            "failed": len(self.failed),
            "failed_codes": sorted(set(self.failed.values())),
            "losses": len(self.losses),
            "duplicates": len(self.duplicates),
            "wrong_bytes": len(self.wrong_bytes),
            "event_gaps": len(self.event_gaps),
            "abandoned_inits": self.abandoned_inits,
            "limits_exceeded": self.limits_exceeded,
            "rate_limited_total": self.rate_limited_total,
            "reauth_required": len(self.reauth_required),
        }


async def verify(run: Run, states: dict[str, dict[str, Any]], limits: dict[str, int]) -> Verdict:
    """Everything DESIGN.md's guarantees promise, checked from the outside."""
    sandbox_posts = await run.sandbox("/_sandbox/posts")
    by_post: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in sandbox_posts:
        title = (item.get("post_info") or {}).get("title") or ""
        by_post[title.removeprefix("fault run ")].append(item)
    done = ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX")
    published = [p for p, s in states.items() if s["state"] == "published"]
    failed = {
        p: (s.get("error") or {}).get("code") or "?" for p, s in states.items() if s["state"] == "failed"
    }
    losses = [p for p in run.posts if states.get(p, {}).get("state") not in TERMINAL]
    duplicates: dict[str, int] = {}
    wrong_bytes: list[str] = []
    abandoned = 0
    for post_id, video in run.posts.items():
        completed = [i for i in by_post.get(post_id, []) if i["status"] in done]
        abandoned += sum(1 for i in by_post.get(post_id, []) if i["status"] not in done)
        if len(completed) > 1:
            duplicates[post_id] = len(completed)
        if post_id in published:
            if not completed:
                losses.append(post_id)  # "published" here, nothing at TikTok
            elif any((i["size"], i["sha256"]) != (video.size, video.sha256) for i in completed):
                wrong_bytes.append(post_id)
        elif completed:
            duplicates[post_id] = len(completed)  # at TikTok, yet not reported published
    events = await run.status_events()
    gaps: dict[str, str] = {}
    for post_id in run.posts:
        unique: dict[str, PostStatusData] = {}
        for event_id, data in events.get(post_id, []):
            unique.setdefault(event_id, data)
        seqs = sorted({d.seq for d in unique.values()})
        last = max(unique.values(), key=lambda d: d.seq, default=None)
        final = states.get(post_id, {})
        if seqs != list(range(1, len(seqs) + 1)):
            gaps[post_id] = f"seqs {seqs}"
        elif last is None or last.state.value != final.get("state") or last.seq != final.get("seq"):
            gaps[post_id] = f"last event {last and (last.seq, last.state.value)} vs row {final}"
    calls = await run.sandbox("/_sandbox/calls")
    exceeded = [
        f"{c['endpoint']}: {c['max_in_window']} > {limits[c['endpoint']]}"
        for c in calls["calls"]
        if c["endpoint"] in limits and c["max_in_window"] > limits[c["endpoint"]]
    ]
    accounts = await run.accounts_status()
    return Verdict(
        posts=len(run.posts),
        published=len(published),
        failed=failed,
        losses=losses,
        duplicates=duplicates,
        wrong_bytes=wrong_bytes,
        event_gaps=gaps,
        abandoned_inits=abandoned,
        limits_exceeded=exceeded,
        rate_limited_total=int(calls["rate_limited_total"]),
        reauth_required=[a for a, s in accounts.items() if s != "connected"],
    )


def assert_guarantees(verdict: Verdict) -> None:
    assert not verdict.losses, f"posts lost: {verdict.losses}"
    assert not verdict.duplicates, f"posted more than once at TikTok: {verdict.duplicates}"
    assert not verdict.wrong_bytes, f"bytes at TikTok differ from the source: {verdict.wrong_bytes}"
    assert not verdict.event_gaps, f"status events missing or out of step: {verdict.event_gaps}"
    assert not verdict.limits_exceeded, f"per-token limits exceeded: {verdict.limits_exceeded}"
    assert verdict.rate_limited_total == 0, "TikTok answered 429: the shared rate window slipped"
    assert not verdict.reauth_required, f"accounts lost: {verdict.reauth_required}"
    assert not verdict.failed, f"posts failed: {verdict.failed}"


def log_counts(log: Path, events: tuple[str, ...]) -> dict[str, int]:
    """How often each event name appears in a service's JSON log (what the faults made it do)."""
    counts = dict.fromkeys(events, 0)
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line).get("event")
        except ValueError:
            continue
        if event in counts:
            counts[event] += 1
    return counts


def creators(n: int) -> list[dict[str, Any]]:
    return [
        {"username": f"creator{i}", "nickname": f"Creator {i}", "daily_post_cap": 10_000} for i in range(n)
    ]


def base_sandbox(n_creators: int) -> dict[str, Any]:
    return {
        "creators": creators(n_creators),
        "rate_window_s": RATE_WINDOW_S,
        "processing_min_s": 1.0,
        "moderation_delay_s": 1.0,
    }


BASE_ENV = {
    "TIKTOK_RATE_WINDOW_S": str(RATE_WINDOW_S),
    "PUBLISH_WORKERS": "4",
    "PUBLISH_LEASE_S": "10",
    "TIKTOK_TIMEOUT_S": "8",
    "PUBLISH_TOKEN_WAIT_S": "15",
    "AUTH_REFRESH_POLL_INTERVAL_S": "1",
    "AUTH_REFRESH_CALL_TIMEOUT_S": "5",
    "AUTH_REFRESH_LEASE_S": "20",  # a refresh answered during a Postgres outage is kept 15 s
    "AUTH_REFRESH_BACKOFF_BASE_S": "1",
    "AUTH_REFRESH_BACKOFF_CAP_S": "5",
    "AUTH_REFRESH_REQUEST_MIN_INTERVAL_S": "5",
    "LOG_LEVEL": "INFO",
}

LIMITS = {"/v2/post/publish/video/init/": 6, "/v2/post/publish/creator_info/query/": 20,
          "/v2/post/publish/status/fetch/": 30}  # fmt: skip


# ---------------------------------------------------------------------------------------- 1. processes


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Any:
    """Logs of the run under .stack/reliability/ (pytest's tmp dirs are pruned by other sessions
    while a long run is still going); the uploaded media the sandbox kept is removed afterwards."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = ROOT / ".stack" / "reliability" / f"{stamp}-{request.node.name[:40]}-{SEED}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path / "pipeline" / "sandbox-data", ignore_errors=True)


@pytest_asyncio.fixture
async def dedicated_servers():
    with tempfile.TemporaryDirectory(prefix="tiktok-kafka-") as kafka_dir:
        async with KafkaInstance(Path(kafka_dir)) as kafka, PgInstance() as pg:
            yield kafka, pg


@pytest.mark.timeout(900 if not SOAK else 3600)
async def test_no_post_lost_or_doubled_while_processes_and_servers_die(stack, dedicated_servers, workdir):
    kafka, pg = dedicated_servers
    rng = random.Random(SEED)
    n_posts, n_publish_kills, n_auth_kills = (400, 40, 8) if SOAK else (100, 12, 3)
    n_large = 30 if SOAK else 10
    print(f"\nfault run seed {SEED} (FAULTS_SEED={SEED} replays it); posts {n_posts}; logs in {workdir}")
    small_paths, large_paths = media_files([1 * MIB, 2 * MIB, 7 * MIB // 2, 6 * MIB], [70 * MIB])
    env = {
        **stack.env(),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "DATABASE_URL": pg.url,
        "S3_BUCKET": "media",
    }
    pipeline = LocalPipeline(
        EnvReader(env),
        workdir / "pipeline",
        creators=tuple(c["username"] for c in creators(4)),
        sandbox_overrides={**base_sandbox(4), "access_token_ttl_s": 60},
        # The smallest chunks TikTok allows: a 70 MB upload has 13 places to resume from.
        extra_env={**BASE_ENV, "PUBLISH_CHUNK_SIZE": str(5 * MIB)},
    )
    pipeline.work.mkdir()
    run = Run(pipeline, kafka.bootstrap)
    started = time.monotonic()
    faults: dict[str, int] = defaultdict(int)
    try:
        await pipeline.start()
        small = [await _upload_once(pipeline, p) for p in small_paths]
        large = [await _upload_once(pipeline, p) for p in large_paths]
        for c in creators(4):
            account = await pipeline.connect_creator(creator=c["username"])
            run.accounts[account] = c["username"]
        # Every refresh waits 2 s at TikTok before it is handled: a kill in that window lands
        # mid-refresh, with the request sent and no answer yet.
        await _sandbox_post(pipeline, "/_sandbox/faults",
                            {"endpoint": "/v2/oauth/token/", "latency_ms": 2000, "count": None})  # fmt: skip
        accounts = sorted(run.accounts)
        await wait_accounts_known(pipeline, accounts)
        run.producer = Producer(kafka.bootstrap)
        await run.producer.start()
        now = datetime.now(UTC)
        large_slots = set(rng.sample(range(n_posts), n_large))
        for i in range(n_posts):
            video = rng.choice(large) if i in large_slots else rng.choice(small)
            # Half are scheduled over about a second per post, so work keeps arriving while faults
            # land; the large ones all are, so that uploads are under way throughout.
            scheduled = i in large_slots or rng.random() < 0.5
            publish_at = now + timedelta(seconds=rng.uniform(0, n_posts * 1.2)) if scheduled else None
            await run.submit(f"fp-{i:03d}", accounts[i % len(accounts)], video, publish_at)
        await run.producer.stop()
        run.producer = None

        aimed = n_publish_kills // 2
        plan = (
            ["publish"] * (n_publish_kills - aimed)
            + ["publish_mid_upload"] * aimed
            + ["auth"] * n_auth_kills
            + ["kafka", "postgres"]
        )
        rng.shuffle(plan)
        for kind in plan:
            # The chaos schedule: random gaps between faults (the faults are what we wait for).
            await asyncio.sleep(rng.uniform(1.0, 5.0))
            print(f"  t+{time.monotonic() - started:5.1f}s fault: {kind}")
            faults[await inject(kind, run, kafka, pg, rng)] += 1
        fault_end = time.monotonic() - started
        states = await run.wait_all_terminal(timeout=600 if SOAK else 300)
        verdict = await verify(run, states, LIMITS)
    finally:
        if run.producer is not None:
            await run.producer.stop()
        await pipeline.stop()
    recovery = log_counts(
        pipeline.work / "publish_service.log",
        ("upload_resumed", "upload_resync", "upload_reinit", "post_lease_lost", "post_step_crashed"),
    )
    summary = {
        "seed": SEED,
        "faults": dict(faults),
        "faults_total": sum(faults.values()),
        **verdict.as_dict(),
        "publish_service_recovery": recovery,
        "faults_over_s": round(fault_end, 1),
        "run_s": round(time.monotonic() - started, 1),
    }
    print("FAULTS SUMMARY " + json.dumps(summary, sort_keys=True))
    _record("soak" if SOAK else "processes", summary)
    assert_guarantees(verdict)


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


async def _sandbox_post(pipeline: LocalPipeline, path: str, body: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as http, http.post(f"{pipeline.sandbox_url}{path}", json=body) as r:
        r.raise_for_status()
        return await r.json()


async def _token_calls(pipeline: LocalPipeline) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{pipeline.sandbox_url}/_sandbox/calls") as r:
        calls = await r.json()
    return sum(c["calls"] for c in calls["calls"] if c["endpoint"] == "/v2/oauth/token/")


MID_UPLOAD_SQL = """SELECT count(*) FROM publish.posts
                    WHERE state = 'uploading' AND bytes_acked > 0 AND bytes_acked < media_size"""


async def inject(kind: str, run: Run, kafka: KafkaInstance, pg: PgInstance, rng: random.Random) -> str:
    """Inject one fault; return what was injected."""
    pipeline = run.pipeline
    if kind == "publish":
        await pipeline.kill("publish_service")
        await pipeline.restart("publish_service")
    elif kind == "publish_mid_upload":
        # Aimed: the moment some post has TikTok acknowledge part of its bytes, not all.
        conn = await asyncpg.connect(pipeline.database_url, timeout=10)
        try:

            async def mid_upload() -> bool:
                return bool(await conn.fetchval(MID_UPLOAD_SQL))

            try:
                await wait_for(mid_upload, 20, 0.02)
            except WaitTimeout:
                kind = "publish"  # no upload under way right now: a kill at a random moment then
        finally:
            await conn.close()
        await pipeline.kill("publish_service")
        await pipeline.restart("publish_service")
    elif kind == "auth":
        before = await _token_calls(pipeline)

        async def refreshing() -> bool:
            return await _token_calls(pipeline) > before

        # Refreshes come every ~30 s per account (60 s tokens, refreshed at half life).
        await wait_for(refreshing, 60, 0.05, description="a token refresh under way")
        await pipeline.kill("auth_service")
        await pipeline.restart("auth_service")
    elif kind == "kafka":
        await kafka.stop()
        await asyncio.sleep(rng.uniform(3.0, 8.0))  # the outage itself
        await kafka.start()
    elif kind == "postgres":
        await pg.stop("immediate")
        await asyncio.sleep(rng.uniform(2.0, 5.0))  # the outage itself
        await pg.start()
    else:
        raise ValueError(kind)
    return kind


# ---------------------------------------------------------------------------------------- 2. network


async def test_a_chunk_put_to_a_peer_that_stops_reading_times_out() -> None:
    """A hung upload host that accepts the connection and never reads: the PUT must give up after
    the stall timeout instead of holding its worker forever (aiohttp's sock_read covers only the
    answer, not the writes)."""
    held: list[asyncio.StreamWriter] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()
        held.append(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chunk = 32 * MIB  # far more than the socket buffers hold

    async def body() -> Any:
        for _ in range(chunk // MIB):
            yield b"\0" * MIB

    try:
        async with aiohttp.ClientSession() as session:
            client = TikTokClient(
                session, "http://127.0.0.1:1", client_key="k", client_secret="s", upload_read_timeout=2.0
            )
            started = time.monotonic()
            with pytest.raises(TikTokTransportError) as caught:
                async with asyncio.timeout(30):  # the bug: without the write watchdog, this fires
                    await client.put_chunk(
                        f"http://127.0.0.1:{port}/video/?upload_id=1",
                        body(),
                        first=0,
                        last=chunk - 1,
                        total=chunk,
                    )
            assert caught.value.maybe_applied
            assert time.monotonic() - started < 10
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def _post_progress(pipeline: LocalPipeline, post_id: str) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {pipeline.api_key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{pipeline.publish_url}/v1/posts/{post_id}") as r,
    ):
        return await r.json() if r.status == 200 else None


@pytest.mark.timeout(600)
async def test_latency_cuts_and_a_stalled_tiktok_end_in_one_post_each(stack, workdir):
    rng = random.Random(SEED + 1)
    n_posts = 60 if SOAK else 24
    small_paths, large_paths = media_files([1 * MIB, 2 * MIB, 7 * MIB // 2, 6 * MIB], [70 * MIB])
    api_timeout_s, stall_timeout_s = 4.0, 6.0
    pipeline = LocalPipeline(
        EnvReader({**stack.env(), "S3_BUCKET": "media"}),
        workdir / "pipeline",
        creators=tuple(c["username"] for c in creators(2)),
        sandbox_overrides=base_sandbox(2),
        extra_env={
            **BASE_ENV,
            "TIKTOK_TIMEOUT_S": str(api_timeout_s),
            "PUBLISH_UPLOAD_STALL_TIMEOUT_S": str(stall_timeout_s),
        },
    )
    pipeline.work.mkdir()
    run = Run(pipeline, stack.kafka_bootstrap)
    proxy = FaultyProxy("127.0.0.1", int(pipeline.sandbox_url.rsplit(":", 1)[1]))
    await proxy.start()
    # Every call to TikTok goes through the proxy, the upload PUTs too (upload_url's base).
    pipeline.extra_env["TIKTOK_API_BASE"] = proxy.url
    pipeline.sandbox_overrides["public_base_url"] = proxy.url
    started = time.monotonic()
    print(f"\nnetwork fault seed {SEED} (FAULTS_SEED={SEED} replays it); logs in {workdir}")
    try:
        await pipeline.start()
        small = [await _upload_once(pipeline, p) for p in small_paths]
        large = [await _upload_once(pipeline, p) for p in large_paths]
        for c in creators(2):
            run.accounts[await pipeline.connect_creator(creator=c["username"])] = c["username"]
        accounts = sorted(run.accounts)
        await wait_accounts_known(pipeline, accounts)
        run.producer = Producer(stack.kafka_bootstrap)
        await run.producer.start()

        # Phase 1: every piece delayed, a third of the connections reset somewhere mid-stream.
        proxy.latency(0.03)
        # Connections are kept alive and carry many calls: most get cut, and so do their successors.
        proxy.cut(after=(500, 12 * MIB), probability=0.8, rng=rng)
        for i in range(n_posts):
            video = large[0] if i % 12 == 5 else rng.choice(small)
            await run.submit(f"np-{i:03d}", accounts[i % 2], video, None)
        await run.wait_all_terminal(timeout=300)
        cuts = proxy.stats.cuts
        assert cuts > 0, "the proxy cut nothing: phase 1 proved nothing"

        # Phase 2: TikTok hangs (accepts, never answers) while a 70 MB upload is under way (the
        # latency stays, so the upload lasts long enough to be caught in the middle).
        proxy.pass_through()
        proxy.latency(0.03)
        await run.submit("stall-large", accounts[0], large[0], None)

        async def uploading() -> bool:
            post = await _post_progress(pipeline, "stall-large")
            return bool(post and post["state"] == "uploading" and (post["progress"] or {}).get("bytes_sent"))

        await wait_for(uploading, 120, 0.05, description="the 70 MB post mid-upload")
        proxy.stall()
        stall_began = time.monotonic()
        for i in range(3):
            await run.submit(f"stall-{i}", accounts[1], small[i], None)

        async def gave_up() -> bool:
            waits = proxy.stats.stall_durations_s
            # API calls give up after TIKTOK_TIMEOUT_S, the chunk PUT after the stall timeout.
            return len(waits) >= 3 and max(waits) >= stall_timeout_s - 1

        # Every stalled call ends on the client's own timeout, not on ours.
        await wait_for(gave_up, 60, 0.1, description="the services giving up on stalled calls")
        held = proxy.stats.stall_durations_s[:]
        proxy.pass_through()
        stall_s = time.monotonic() - stall_began
        states = await run.wait_all_terminal(timeout=240)
        verdict = await verify(run, states, LIMITS)
    finally:
        if run.producer is not None:
            await run.producer.stop()
        await pipeline.stop()
        await proxy.stop()
    summary = {
        "seed": SEED,
        "connections": proxy.stats.connections,
        "cuts": cuts,
        "stalled_connections": proxy.stats.stalled,
        "stalled_given_up_by_client": len(held),
        "longest_stalled_wait_s": round(max(held), 1),
        "stall_s": round(stall_s, 1),
        **verdict.as_dict(),
        "publish_service_recovery": log_counts(
            pipeline.work / "publish_service.log", ("chunk_interrupted", "upload_resync", "post_deferred")
        ),
        "run_s": round(time.monotonic() - started, 1),
    }
    print("NETWORK FAULTS SUMMARY " + json.dumps(summary, sort_keys=True))
    _record("network", summary)
    # A client never waited on a hung TikTok much longer than its own timeouts.
    assert max(held) < max(api_timeout_s, stall_timeout_s) + 5, held
    assert_guarantees(verdict)


# ------------------------------------------------------------------------------------ auth and Postgres


@pytest.mark.timeout(180)
async def test_a_refresh_answered_while_postgres_is_down_is_stored_once_it_is_back(stack, workdir):
    """TikTok rotates the refresh token when it answers: if auth_service then cannot commit the new
    pair, the account is lost for good (the old refresh token is dead). A Postgres restart longer
    than a few quick retries must not do that: the answer is kept and committed when it returns."""
    async with PgInstance() as pg:
        pipeline = LocalPipeline(
            EnvReader({**stack.env(), "DATABASE_URL": pg.url, "S3_BUCKET": "media"}),
            workdir / "pipeline",
            creators=("creator0",),
            sandbox_overrides={**base_sandbox(1), "access_token_ttl_s": 16},
            extra_env={**BASE_ENV, "AUTH_REFRESH_LEASE_S": "40"},
        )
        pipeline.work.mkdir()
        try:
            await pipeline.start()
            account = await pipeline.connect_creator(creator="creator0")
            before = await _token_calls(pipeline)
            # The next refresh reaches TikTok and is answered 1.5 s later; Postgres is gone by then.
            await _sandbox_post(
                pipeline, "/_sandbox/faults", {"endpoint": "/v2/oauth/token/", "latency_ms": 1500, "count": 1}
            )

            async def refreshing() -> bool:
                return await _token_calls(pipeline) > before

            await wait_for(refreshing, 30, 0.02, description="the first refresh under way")
            await pg.stop("immediate")
            await asyncio.sleep(10)  # the outage: longer than the old five quick commit tries
            await pg.start()
            run = Run(pipeline, stack.kafka_bootstrap)

            async def refreshed() -> dict[str, Any] | None:
                headers = {"Authorization": f"Bearer {pipeline.api_key}"}
                async with (
                    aiohttp.ClientSession(headers=headers) as http,
                    http.get(f"{pipeline.auth_url}/v1/accounts/{account}") as r,
                ):
                    body = await r.json() if r.status == 200 else None
                return (
                    body if body and (body["status"] != "connected" or body["token_version"] >= 2) else None
                )

            body = await wait_for(refreshed, 60, 0.2, ignore=(aiohttp.ClientError,))
            assert body["status"] == "connected", body
            assert await run.accounts_status() == {account: "connected"}
        finally:
            await pipeline.stop()
