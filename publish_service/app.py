"""Wiring: ``create_app(settings)`` builds the aiohttp app; every resource is a cleanup_ctx entry.

Start order (and reverse stop order): Postgres pool and migrations → Kafka topics, producer and
outbox relay → object store → HTTP session and TikTok client → the loops (state topics, intake,
workers). So at shutdown the workers stop claiming and checkpoint first, the relay still publishes
their last events, and the pool closes last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import structlog
from aiohttp import web

from common.cipher import TokenCipher
from common.db import apply_migrations, create_pool
from common.events import PostState
from common.kafka import (
    TOPIC_ACCESS_TOKENS,
    TOPIC_ACCOUNTS,
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
    TOPIC_TOKEN_REFRESH_REQUESTED,
    Consumer,
    Producer,
    ensure_topics,
    standard_topics,
)
from common.logging import register_secret
from common.outbox import OutboxRelay
from common.s3 import ObjectStore
from common.tasks import BackgroundLoops, sleep_or_stop
from common.tiktok.client import TikTokClient
from common.web import add_health_routes, api_key_middleware, correlation_middleware, error_middleware
from publish_service.adapters.due_signal import DueSignal
from publish_service.adapters.kafka_state import FullTopicReader
from publish_service.adapters.media import MediaSource
from publish_service.adapters.repository import Repository, Topics
from publish_service.handlers.cancel import Cancellation
from publish_service.handlers.intake import Intake
from publish_service.handlers.state_sync import StateSync
from publish_service.handlers.webhooks import WebhookHandler
from publish_service.handlers.worker import Worker
from publish_service.keys import (
    CANCELLATION,
    HTTP,
    LOOPS,
    METRICS,
    POOL,
    PRODUCER,
    RELAY,
    RELAY_LOOPS,
    REPO,
    SETTINGS,
    STATE_READER,
    STORE,
    TIKTOK,
    WEBHOOKS,
    WORKER,
)
from publish_service.metrics import Metrics
from publish_service.settings import Settings
from publish_service.web.routes import routes

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings.database_url.get(), min_size=2, max_size=settings.workers * 2 + 6)
    try:
        await apply_migrations(pool, settings.schema, MIGRATIONS)
        app[POOL] = pool
        app[REPO] = Repository(
            pool,
            settings.schema,
            Topics(
                status=settings.topic(TOPIC_POST_STATUS),
                dlq=settings.topic(TOPIC_POST_REQUESTED_DLQ),
                refresh=settings.topic(TOPIC_TOKEN_REFRESH_REQUESTED),
            ),
            rate_window_s=settings.rate_window_s,
            on_transition=lambda state: app[METRICS].posts.labels(state).inc(),
        )
        yield
    finally:
        await pool.close()


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        standard_topics(settings.topic_prefix, partitions=settings.kafka_partitions).values(),
        alter_config=False,
    )
    producer = Producer(settings.kafka_bootstrap_servers, client_id=f"publish-{settings.instance_id}")
    await producer.start()
    app[PRODUCER] = producer
    relay = OutboxRelay(app[POOL], settings.schema, producer, poll_interval=0.5, lock_retry_interval=2.0)
    app[RELAY] = relay
    loops = BackgroundLoops(shutdown_deadline=settings.shutdown_deadline_s)
    loops.add("outbox_relay", relay.run, health=relay.health)
    app[RELAY_LOOPS] = loops
    try:
        async with loops:
            yield
    finally:
        await producer.stop()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    async with ObjectStore(
        endpoint_url=s.s3_endpoint_url,
        access_key_id=s.s3_access_key_id,
        secret_access_key=s.s3_secret_access_key.get() or None,
        region=s.s3_region,
        max_pool_connections=max(20, s.workers * 2),
    ) as store:
        app[STORE] = store
        yield


async def _tiktok(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    async with aiohttp.ClientSession(trust_env=False) as session:
        app[HTTP] = session
        app[TIKTOK] = TikTokClient(
            session,
            s.tiktok_api_base,
            client_key=s.tiktok_client_key,
            client_secret=s.tiktok_client_secret.get(),
            timeout=s.tiktok_timeout_s,
            upload_read_timeout=s.upload_stall_timeout_s,
            observer=app[METRICS].shared.observe_call,
        )
        yield


async def _loops(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    repo = app[REPO]
    metrics = app[METRICS]
    loops = BackgroundLoops(shutdown_deadline=settings.shutdown_deadline_s)
    reader = FullTopicReader(
        settings.kafka_bootstrap_servers,
        [settings.topic(TOPIC_ACCOUNTS), settings.topic(TOPIC_ACCESS_TOKENS)],
        client_id=f"publish-state-{settings.instance_id}",
    )
    sync = StateSync(repo, settings.topic(TOPIC_ACCOUNTS), settings.topic(TOPIC_ACCESS_TOKENS))
    intake = Intake(repo, metrics)
    due = DueSignal(app[POOL], settings.schema)
    worker = Worker(
        repo=repo,
        tiktok=app[TIKTOK],
        media=MediaSource(
            app[STORE], public_base_url=settings.media_public_base_url, presign_ttl_s=settings.presign_ttl_s
        ),
        cipher=TokenCipher(settings.transport_ring()),
        settings=settings,
        stopping=loops.stopping,
        metrics=metrics,
        due=due,
    )
    app[STATE_READER] = reader
    app[WORKER] = worker
    app[WEBHOOKS] = WebhookHandler(repo, metrics)
    app[CANCELLATION] = Cancellation(repo)

    async def read_state(_stopping: asyncio.Event) -> None:
        await reader.run(sync.handle, loops.stopping)

    async def consume_requests(_stopping: asyncio.Event) -> None:
        await _wait_or_stop(reader.caught_up, loops.stopping)
        if loops.stopping.is_set():
            return
        consumer = Consumer(
            settings.kafka_bootstrap_servers,
            [settings.topic(TOPIC_POST_REQUESTED)],
            group_id=f"{settings.topic_prefix}publish_service",
            client_id=f"publish-intake-{settings.instance_id}",
            max_poll_records=200,
        )
        async with consumer:
            while not loops.stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    await intake.handle_batch(records)
                    await consumer.commit_offsets({tp: records[-1].offset + 1})
                    highwater = consumer.raw.highwater(tp)
                    if highwater is not None:
                        metrics.shared.set_lag(tp.topic, tp.partition, highwater - records[-1].offset - 1)

    async def gauges(_stopping: asyncio.Event) -> None:
        """``tiktok_posts_in_state`` and ``tiktok_outbox_backlog{service="publish"}``, every 5 s."""
        backlog = metrics.shared.outbox_backlog.labels("publish")
        while not loops.stopping.is_set():
            try:
                counts = await repo.count_by_state()
                for state in PostState:
                    metrics.posts_in_state.labels(state.value).set(counts.get(state.value, 0))
                backlog.set(await app[RELAY].backlog())
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("gauges_unknown", error=f"{type(exc).__name__}: {exc}")
            if await sleep_or_stop(loops.stopping, 5.0):
                return

    loops.add("due_signal", due.run, restart_delay=1.0)
    loops.add("state_topics", read_state, restart_delay=2.0)
    loops.add("gauges", gauges, restart_delay=5.0)
    loops.add("intake", consume_requests, restart_delay=2.0)
    for n in range(settings.workers):
        loops.add(f"worker-{n}", lambda _stopping, n=n: worker.run(n), restart_delay=1.0)  # type: ignore[misc]
    app[LOOPS] = loops
    async with loops:
        yield
    log.info("publish_service_stopped")


async def _wait_or_stop(event: asyncio.Event, stopping: asyncio.Event) -> None:
    waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopping.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def create_app(settings: Settings) -> web.Application:
    register_secret(settings.tiktok_client_secret.get())
    register_secret(settings.api_key.get())
    app = web.Application(
        middlewares=[
            correlation_middleware,
            error_middleware,
            api_key_middleware(settings.api_key.get(), ["/v1/posts"]),
        ],
        client_max_size=512 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.extend([_database, _kafka, _storage, _tiktok, _loops])

    async def db_ready() -> None:
        await app[REPO].ping()

    async def loops_ready() -> None:
        await app[LOOPS].check()
        await app[RELAY_LOOPS].check()

    async def state_ready() -> None:
        if not app[STATE_READER].caught_up.is_set():
            raise RuntimeError("still reading the account and token topics")

    add_health_routes(
        app,
        app[METRICS].registry,
        {"database": db_ready, "loops": loops_ready, "state": state_ready},
        metrics_port=settings.metrics_port,
        metrics_host=settings.http_host,
    )
    app.add_routes(routes())
    return app
