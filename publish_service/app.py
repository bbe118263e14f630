"""Wiring: ``create_app(settings)`` builds the aiohttp app; every resource is a cleanup_ctx entry.

Start order (and reverse stop order): Postgres pool and migrations → the Kafka check, then the
topics (created only with KAFKA_MANAGE_TOPICS=true) and the outbox relay, which starts the producer →
object store → HTTP session and TikTok client → the loops (state topics, intake,
workers). So at shutdown the workers stop claiming and checkpoint first, the relay still publishes
their last events, and the pool closes last.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from common.cipher import TokenCipher
from common.db import apply_migrations, create_pool
from common.http_metrics import observe_http
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
    TopicGate,
    standard_topics,
)
from common.kafka_health import KafkaConnectivity, public_reason
from common.kafka_provision import manage_topics_from_env
from common.kafka_security import security_from_env
from common.logging import register_dsn_password, register_key_material, register_secret
from common.outbox_relay import BacklogGauge, OutboxRelay
from common.s3 import ObjectStore
from common.tasks import BackgroundLoops, started_after
from common.tiktok.client import TikTokClient
from common.tracing import configure_tracing
from common.web import (
    PublicReason,
    add_health_routes,
    api_key_middleware,
    correlation_middleware,
    error_middleware,
)
from publish_service.adapters.due_signal import DueSignal
from publish_service.adapters.kafka_state import FullTopicSource
from publish_service.adapters.media import MediaSource
from publish_service.adapters.repository import Repository, Topics
from publish_service.handlers.cancel import Cancellation
from publish_service.handlers.gauges import PostStateGauge
from publish_service.handlers.housekeeping import prune_webhook_receipts
from publish_service.handlers.idle import IdleWorkers
from publish_service.handlers.insights import add_insights_loops
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

KAFKA_CHECK = web.AppKey("kafka_check", KafkaConnectivity)
TOPICS = web.AppKey("topics", TopicGate)

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
            on_error=lambda state, code: app[METRICS].post_errors.labels(state, code).inc(),
            on_dead_letter=lambda code: app[METRICS].dead_letters.labels(code).inc(),
        )
        yield
    finally:
        await pool.close()


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Nothing here waits for Kafka: the check loop reports a wrong password, an unknown CA or a
    # missing topic on /readyz (one log line per interval), and the loops that use Kafka wait for it.
    # The relay starts the producer.
    check = app[KAFKA_CHECK]
    producer = Producer(settings.kafka_bootstrap_servers, client_id=f"publish-{settings.instance_id}")
    app[PRODUCER] = producer
    relay = OutboxRelay(app[POOL], settings.schema, producer, poll_interval=0.5, lock_retry_interval=2.0)
    app[RELAY] = relay
    loops = BackgroundLoops(shutdown_deadline=settings.shutdown_deadline_s)
    topics = app[TOPICS]
    loops.add("kafka-check", check.run, restart_delay=5.0, health=check.health)
    loops.add(
        "outbox-relay",
        check.gating(topics.ensuring_first(relay.run)),
        restart_delay=2.0,
        health=lambda: check.health() or topics.health() or relay.health(),
    )
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
    due = DueSignal(app[POOL], settings.schema)
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

    loops.add("due_signal", due.run, restart_delay=1.0)
    loops.add("state_topics", app[TOPICS].waiting_first(state_loop.run), restart_delay=2.0)
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
    metrics.workers.set(settings.workers)
    if settings.insights_enabled:
        add_insights_loops(loops, app[POOL], repo, app[TIKTOK], settings, metrics.registry)
    idle = IdleWorkers()
    loops.add(
        "idle_watch",
        lambda stopping: idle.watch(repo.next_due_in, due, settings.claim_idle_s, stopping),
        restart_delay=1.0,
    )
    for n in range(settings.workers):
        owner = worker_owner(settings.instance_id, n)
        worker = Worker(app[REPO], app[TIKTOK], media, cipher, settings, metrics, owner, idle)
        loops.add(f"worker-{n}", worker.run, restart_delay=1.0)
    app[LOOPS] = loops
    async with loops:
        yield
    log.info("publish_service_stopped")


def create_app(settings: Settings) -> web.Application:
    register_secret(settings.tiktok_client_secret.get())
    register_secret(settings.api_key.get())
    configure_tracing("publish_service", os.environ)  # off unless OTEL_* ask
    register_secret(settings.s3_secret_access_key.get())
    register_dsn_password(settings.database_url.get())
    register_key_material(settings.transport_keys.keys.values())
    kafka_security = security_from_env()  # a bad combination stops the start (ConfigError)
    if kafka_security.sasl_password is not None:
        register_secret(kafka_security.sasl_password.get())
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
    observe_http(app, app[METRICS].registry)
    specs = list(standard_topics(settings.topic_prefix, partitions=settings.kafka_partitions).values())
    manage_topics = manage_topics_from_env()
    app[KAFKA_CHECK] = KafkaConnectivity(settings.kafka_bootstrap_servers, specs, manage_topics=manage_topics)
    # Created only with KAFKA_MANAGE_TOPICS=true; an existing topic's settings are left as they are.
    app[TOPICS] = TopicGate(settings.kafka_bootstrap_servers, specs, alter_config=False, manage=manage_topics)
    app.cleanup_ctx.extend([_database, _kafka, _storage, _tiktok, _loops])

    async def db_ready() -> None:
        await app[REPO].ping()

    async def loops_ready() -> None:
        await app[LOOPS].check()
        await app[RELAY_LOOPS].check()

    async def state_ready() -> None:
        if not app[STATE_READER].caught_up.is_set():
            raise RuntimeError("still reading the account and token topics")

    async def kafka_ready() -> None:
        """Authentication, TLS, a missing topic: named here (the parts wait for Kafka meanwhile)."""
        problem = app[KAFKA_CHECK].health() or app[TOPICS].health()
        if problem is not None:
            raise PublicReason(problem, public_reason(problem))

    add_health_routes(
        app,
        app[METRICS].registry,
        {"database": db_ready, "kafka": kafka_ready, "loops": loops_ready, "state": state_ready},
        metrics_port=settings.metrics_port,
        metrics_host=settings.http_host,
    )
    app.add_routes(routes())
    return app
