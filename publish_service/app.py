"""Wiring: ``create_app(settings)`` builds the aiohttp app; every resource is a cleanup_ctx entry.

Start order (and reverse stop order): Postgres pool and migrations → Kafka topics, producer and
outbox relay → object store → HTTP session and TikTok client → the loops (state topics, intake,
workers). So at shutdown the workers stop claiming and checkpoint first, the relay still publishes
their last events, and the pool closes last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from common.cipher import TokenCipher
from common.db import apply_migrations, create_pool
from common.kafka import (
    TOPIC_ACCESS_TOKENS,
    TOPIC_ACCOUNTS,
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
    TOPIC_TOKEN_REFRESH_REQUESTED,
    ConsumeLoop,
    Consumer,
    Producer,
    ensure_topics,
    standard_topics,
)
from common.logging import register_secret
from common.outbox import BacklogGauge, OutboxRelay
from common.s3 import ObjectStore
from common.tasks import BackgroundLoops, started_after
from common.tiktok.client import TikTokClient
from common.web import add_health_routes, api_key_middleware, correlation_middleware, error_middleware
from publish_service.adapters.kafka_state import FullTopicSource
from publish_service.adapters.media import MediaSource
from publish_service.adapters.repository import Repository, Topics
from publish_service.handlers.cancel import Cancellation
from publish_service.handlers.gauges import PostStateGauge
from publish_service.handlers.housekeeping import prune_webhook_receipts
from publish_service.handlers.intake import Intake, decode_request
from publish_service.handlers.state_sync import StateSync
from publish_service.handlers.webhooks import WebhookHandler
from publish_service.handlers.worker import Worker, worker_owner
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
    loops.add("outbox-relay", relay.run, health=relay.health)
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
            upload_domains=s.tiktok_upload_domains,
        )
        yield


async def _loops(app: web.Application) -> AsyncIterator[None]:
    """Wiring only: the state topics (read in full), intake (once the state has caught up), the
    gauges and the workers, each a ``run(stopping)`` part of one ``BackgroundLoops``."""
    settings, repo, metrics = app[SETTINGS], app[REPO], app[METRICS]
    loops = BackgroundLoops(shutdown_deadline=settings.shutdown_deadline_s)
    state = FullTopicSource(
        settings.kafka_bootstrap_servers,
        [settings.topic(TOPIC_ACCOUNTS), settings.topic(TOPIC_ACCESS_TOKENS)],
        client_id=f"publish-state-{settings.instance_id}",
    )
    sync = StateSync(
        repo,
        settings.topic(TOPIC_ACCOUNTS),
        settings.topic(TOPIC_ACCESS_TOKENS),
        on_bad=lambda topic, code: metrics.shared.state_event_bad.labels(topic, code).inc(),
        cipher=TokenCipher(settings.transport_keys),
    )
    state_loop = ConsumeLoop.each(
        "state-topics", state, sync.decode, sync.handle, on_undecodable=sync.log_bad
    )
    intake = Intake(repo, metrics)
    requests = Consumer(
        settings.kafka_bootstrap_servers,
        [settings.topic(TOPIC_POST_REQUESTED)],
        group_id=f"{settings.topic_prefix}publish_service",
        client_id=f"publish-intake-{settings.instance_id}",
        max_poll_records=200,
    )
    intake_loop = ConsumeLoop.batches(
        "intake", requests, decode_request, intake.handle_batch, on_lag=metrics.shared.set_lag
    )
    media = MediaSource(
        app[STORE], public_base_url=settings.media_public_base_url, presign_ttl_s=settings.presign_ttl_s
    )
    cipher = TokenCipher(settings.transport_keys)
    app[STATE_READER] = state
    app[WEBHOOKS] = WebhookHandler(repo, metrics)
    app[CANCELLATION] = Cancellation(repo)

    loops.add("state_topics", state_loop.run, restart_delay=2.0)
    loops.add("gauges", PostStateGauge(repo, metrics).run, restart_delay=5.0)
    loops.add(
        "housekeeping",
        lambda stopping: prune_webhook_receipts(
            repo.prune_webhook_receipts,
            keep_s=settings.webhook_receipts_keep_s,
            every_s=settings.housekeeping_interval_s,
            stopping=stopping,
        ),
        restart_delay=5.0,
    )
    loops.add(
        "outbox-gauge", BacklogGauge(app[RELAY], metrics.shared.outbox_backlog.labels("publish").set).run
    )
    loops.add("intake", started_after(state.caught_up, intake_loop.run), restart_delay=2.0)
    for n in range(settings.workers):
        owner = worker_owner(settings.instance_id, n)
        worker = Worker(app[REPO], app[TIKTOK], media, cipher, settings, metrics, owner)
        loops.add(f"worker-{n}", worker.run, restart_delay=1.0)
    app[LOOPS] = loops
    async with loops:
        yield
    log.info("publish_service_stopped")


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
