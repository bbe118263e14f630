"""What the insights tests share: a reader of the two insights topics, seeded published posts, and
accounts connected with chosen scopes."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from common.events import (
    AccountData,
    AccountStatsData,
    AccountStatus,
    Envelope,
    EventType,
    PostMetricsData,
    decode,
    encode,
)
from common.kafka import TOPIC_ACCOUNT_STATS, TOPIC_ACCOUNTS, TOPIC_POST_METRICS
from tests.publish.harness import PARTITIONS, Harness


@dataclass
class InsightsLog:
    metrics: dict[str, list[Envelope[PostMetricsData]]] = field(default_factory=lambda: defaultdict(list))
    stats: dict[str, list[Envelope[AccountStatsData]]] = field(default_factory=lambda: defaultdict(list))

    def slots(self, post_id: str) -> dict[int, set[str]]:
        """Slot -> the distinct event ids seen for it (a redelivered record has the same id)."""
        out: dict[int, set[str]] = defaultdict(set)
        for e in self.metrics.get(post_id, []):
            out[e.data.slot].add(str(e.event_id))
        return out

    def first_per_slot(self, post_id: str) -> dict[int, PostMetricsData]:
        out: dict[int, PostMetricsData] = {}
        for e in self.metrics.get(post_id, []):
            out.setdefault(e.data.slot, e.data)
        return out


@contextlib.asynccontextmanager
async def reading_insights(harness: Harness) -> AsyncIterator[InsightsLog]:
    log = InsightsLog()
    topics = {harness.topic(TOPIC_POST_METRICS): "metrics", harness.topic(TOPIC_ACCOUNT_STATS): "stats"}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=harness.stack.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()

    async def read() -> None:
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for r in records:
                    if topics[tp.topic] == "metrics":
                        m = decode(r.value, PostMetricsData)
                        assert r.key.decode() == m.data.post_id
                        log.metrics[m.data.post_id].append(m)
                    else:
                        s = decode(r.value, AccountStatsData)
                        assert r.key.decode() == s.data.account_id
                        log.stats[s.data.account_id].append(s)

    task = asyncio.create_task(read())
    try:
        yield log
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


async def connect_with_scopes(harness: Harness, account_id: str, creator: str, scopes: list[str]) -> None:
    """``Harness.connect_account`` with a grant of only ``scopes`` (a creator who unticked some)."""
    issued = await harness.sandbox.control.issue_token(harness.tiktok_app.client_key, creator, scopes)
    granted = issued.scope.split(",")
    await harness.announce_token(account_id, issued.access_token, issued.open_id, granted)
    account = AccountData(
        account_id=account_id,
        open_id=issued.open_id,
        status=AccountStatus.connected,
        scopes=granted,
        token_version=harness.token_versions[account_id],
    )
    value, headers = encode(EventType.account_connected, account)
    await harness.producer.send(harness.topic(TOPIC_ACCOUNTS), account_id, value, headers)


async def seed_videos(harness: Harness, creator: str, count: int, **seed: Any) -> list[dict[str, Any]]:
    """Public videos at the sandbox with no upload behind them."""
    added: list[dict[str, Any]] = await harness.sandbox.control.request(
        "POST", "/videos", {"username": creator, "count": count, **seed}
    )
    return added


async def video(harness: Harness, video_id: str) -> dict[str, Any]:
    found: dict[str, Any] = await harness.sandbox.control.request("GET", f"/videos/{video_id}")
    return found


async def set_video(harness: Harness, video_id: str, **changes: Any) -> dict[str, Any]:
    changed: dict[str, Any] = await harness.sandbox.control.request("PATCH", f"/videos/{video_id}", changes)
    return changed


async def insert_published(
    database_url: str, account_id: str, video_ids: list[str], *, published_ago_s: float = 3600.0
) -> list[str]:
    """Posts that reached ``published`` with these public ids, as publish_service stores them (the
    publishing itself is what the other publish tests cover; here only what comes after matters)."""
    conn = await asyncpg.connect(database_url)
    try:
        post_ids = [f"{account_id}-seeded-{n:04d}" for n in range(len(video_ids))]
        await conn.executemany(
            """INSERT INTO publish.posts (post_id, account_id, request, request_hash, raw_event, state,
                                          tiktok_post_ids, updated_at)
               VALUES ($1, $2, $3::jsonb, 'seeded', '\\x00', 'published', ARRAY[$4],
                       now() - make_interval(secs => $5))""",
            [
                (pid, account_id, f'{{"metadata": {{"campaign": "c{n}"}}}}', vid, published_ago_s)
                for n, (pid, vid) in enumerate(zip(post_ids, video_ids, strict=True))
            ],
        )
        return post_ids
    finally:
        await conn.close()


async def open_slots(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM publish.metric_slots WHERE done_at IS NULL"))
    finally:
        await conn.close()


async def query_calls(harness: Harness) -> list[dict[str, Any]]:
    counts = await harness.sandbox.control.call_counts()
    return [c for c in counts["calls"] if c["endpoint"] == "/v2/video/query/"]
