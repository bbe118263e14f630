"""No post lost or doubled while the services are SIGKILLed and Kafka and PostgreSQL go down.

Posts arrive (half scheduled over the run, the large ones all) while faults land at random gaps:
publish_service killed at random moments and mid-upload, auth_service killed mid-refresh, the
run's own Kafka broker stopped and started, its own PostgreSQL crashed and started. Then every
guarantee of ``verdict.py`` must hold. ``SOAK=1`` (``make soak``): 400 posts, 48 kills.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from common.kafka import Producer
from common.settings import EnvReader
from tests.reliability.faults.harness import (
    MIB,
    SEED,
    SEED_ENV,
    SOAK,
    Run,
    media_files,
    record,
    sandbox_post,
    upload_once,
    wait_accounts_known,
)
from tests.reliability.faults.inject import fault_plan, inject
from tests.reliability.faults.scenario import BASE_ENV, LIMITS, base_sandbox, creators
from tests.reliability.faults.verdict import assert_guarantees, log_counts, verify
from tiktok_pipeline.local import LocalPipeline

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.mark.timeout(900 if not SOAK else 3600)
async def test_no_post_lost_or_doubled_while_processes_and_servers_die(stack, dedicated_servers, workdir):
    kafka, pg = dedicated_servers
    rng = random.Random(SEED)
    n_posts, n_publish_kills, n_auth_kills = (400, 40, 8) if SOAK else (100, 12, 3)
    n_large = 30 if SOAK else 10
    print(f"\nfault run seed {SEED} ({SEED_ENV}={SEED} replays it); posts {n_posts}; logs in {workdir}")
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
        small = [await upload_once(pipeline, p) for p in small_paths]
        large = [await upload_once(pipeline, p) for p in large_paths]
        for c in creators(4):
            account = await pipeline.connect_creator(creator=c["username"])
            run.accounts[account] = c["username"]
        # Every refresh waits 2 s at TikTok before it is handled: a kill in that window lands
        # mid-refresh, with the request sent and no answer yet.
        await sandbox_post(pipeline, "/_sandbox/faults",
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

        for kind in fault_plan(n_publish_kills, n_auth_kills, rng):
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
    record("soak" if SOAK else "processes", summary)
    assert_guarantees(verdict)
