"""Network faults between the services and TikTok: a stalled peer cannot hold a worker, and latency,
connections cut mid-stream and a TikTok that stops answering still end in one post each."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import aiohttp
import pytest

from common.kafka import Producer
from common.settings import EnvReader
from common.tiktok.client import TikTokClient
from common.tiktok.errors import TikTokTransportError
from tests.reliability.faults.harness import (
    MIB,
    SEED,
    SEED_ENV,
    SOAK,
    Run,
    media_files,
    post_progress,
    record,
    upload_once,
    wait_accounts_known,
)
from tests.reliability.faults.scenario import BASE_ENV, LIMITS, base_sandbox, creators
from tests.reliability.faults.verdict import assert_guarantees, log_counts, verify
from tests.reliability.proxy import FaultyProxy
from tests.waiting import wait_for
from tiktok_pipeline.local import LocalPipeline

pytestmark = [pytest.mark.stack, pytest.mark.slow]


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
    print(f"\nnetwork fault seed {SEED} ({SEED_ENV}={SEED} replays it); logs in {workdir}")
    try:
        await pipeline.start()
        small = [await upload_once(pipeline, p) for p in small_paths]
        large = [await upload_once(pipeline, p) for p in large_paths]
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
            post = await post_progress(pipeline, "stall-large")
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
    record("network", summary)
    # A client never waited on a hung TikTok much longer than its own timeouts.
    assert max(held) < max(api_timeout_s, stall_timeout_s) + 5, held
    assert_guarantees(verdict)
