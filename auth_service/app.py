"""Wiring: ``create_app(settings)`` builds the aiohttp app; every resource is a cleanup_ctx entry.

Start order (stop order is the reverse): database pool (migrations applied) → HTTP session and TikTok
client → handlers → Kafka producer and outbox relay → background loops (the Kafka check, refresh,
relay, consumer, housekeeping; the relay starts the producer once the check passed and the topics
are there, created only with KAFKA_MANAGE_TOPICS=true). Nothing is created at import time.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from auth_service.adapters.postgres import Repository
from auth_service.adapters.refresh_requests import refresh_request_loop
from auth_service.adapters.vault import Vault
from auth_service.domain.rate_limit import AddressLimiter
from auth_service.domain.schedule import RefreshPolicy
from auth_service.handlers.accounts import Accounts
from auth_service.handlers.connect import ConnectConfig, ConnectFlow
from auth_service.handlers.refresh import Housekeeping, RefreshConfig, Refresher
from auth_service.handlers.revoke import Finisher, GrantRevoker, RevokeRetries
from auth_service.keys import (
    ACCOUNTS,
    BACKGROUND_POOL,
    BACKGROUND_REPOSITORY,
    CONNECT,
    CONNECT_LIMITER,
    HTTP,
    INSTANCE,
    LOOPS,
    METRICS,
    POOL,
    PRODUCER,
    REFRESH_REQUESTS,
    REFRESHER,
    RELAY,
    REPOSITORY,
    REVOKE_RETRIES,
    SETTINGS,
    TIKTOK,
)
from auth_service.metrics import Metrics
from auth_service.settings import Settings
from auth_service.web.routes import MANAGEMENT_PREFIX, add_routes
from common.backoff import Backoff
from common.cipher import TokenCipher
from common.db import apply_migrations, create_pool
from common.http_metrics import observe_http
from common.kafka import (
    TOPIC_ACCESS_TOKENS,
    TOPIC_ACCOUNTS,
    TOPIC_TOKEN_REFRESH_REQUESTED,
    Producer,
    TopicGate,
    TopicSpec,
    standard_topics,
)
from common.kafka_health import KafkaConnectivity, public_reason
from common.kafka_provision import manage_topics_from_env
from common.kafka_security import security_from_env
from common.logging import register_dsn_password, register_key_material, register_secret
from common.outbox_relay import BacklogGauge, OutboxRelay
from common.tasks import BackgroundLoops
from common.tiktok.client import TikTokClient
from common.tracing import configure_tracing
from common.web import (
    PublicReason,
    add_health_routes,
    api_key_middleware,
    correlation_middleware,
    error_middleware,
)

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def instance_name(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def policy_of(settings: Settings) -> RefreshPolicy:
    t = settings.refresh
    return RefreshPolicy(fraction=t.fraction, min_lead_s=t.min_lead_s, jitter=t.jitter)


def vault_of(settings: Settings) -> Vault:
    return Vault(TokenCipher(settings.token_keys), TokenCipher(settings.transport_keys))


async def _database(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    dsn = s.database_url.get()
    async with (
        create_pool(dsn, min_size=s.db_pool_min, max_size=s.db_pool_max) as pool,
        create_pool(dsn, min_size=1, max_size=s.background_db_pool_max) as background,
    ):
        applied = await apply_migrations(pool, s.schema, MIGRATIONS)
        if applied:
            log.info("migrations_applied", files=applied)
        app[POOL] = pool
        app[REPOSITORY] = Repository(pool, vault_of(s), schema=s.schema, topic_prefix=s.topic_prefix)
        app[BACKGROUND_POOL] = background
        app[BACKGROUND_REPOSITORY] = Repository(
            background, vault_of(s), schema=s.schema, topic_prefix=s.topic_prefix
        )
        yield


async def _http(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    async with aiohttp.ClientSession(headers={"User-Agent": "tiktok-pipeline-auth/0.1"}) as session:
        app[HTTP] = session
        app[TIKTOK] = TikTokClient(
            session,
            s.tiktok_api_base,
            client_key=s.tiktok_client_key,
            client_secret=s.tiktok_client_secret.get(),
            timeout=s.refresh.call_timeout_s,
            observer=app[METRICS].shared.observe_call,
        )
        yield


async def _handlers(app: web.Application) -> AsyncIterator[None]:
    s, repo, metrics = app[SETTINGS], app[REPOSITORY], app[METRICS]
    tiktok = app[TIKTOK]
    t = s.refresh
    app[CONNECT] = ConnectFlow(
        repo,
        tiktok,
        ConnectConfig(
            client_key=s.tiktok_client_key,
            authorize_url=s.tiktok_authorize_url,
            redirect_uri=s.oauth_redirect_uri,
            scopes=s.tiktok_scopes,
            pkce=s.tiktok_app_type == "desktop",
            max_live_states=s.oauth_states_max,
        ),
        policy_of(s),
        metrics,
    )
    finish = Finisher(
        app[BACKGROUND_REPOSITORY],
        GrantRevoker(tiktok),
        Backoff(initial=s.revoke_retry_base_s, maximum=s.revoke_retry_cap_s, jitter=0.2),
    )
    app[ACCOUNTS] = Accounts(repo, tiktok, finish)
    app[REVOKE_RETRIES] = RevokeRetries(
        app[BACKGROUND_REPOSITORY], finish, poll_interval_s=min(5.0, s.revoke_retry_base_s)
    )
    app[CONNECT_LIMITER] = AddressLimiter(per_minute=s.connect_per_minute, burst=s.connect_burst)
    app[REFRESHER] = Refresher(
        app[BACKGROUND_REPOSITORY],
        tiktok,
        RefreshConfig(
            owner=app[INSTANCE],
            concurrency=t.concurrency,
            call_timeout_s=t.call_timeout_s,
            lease_s=t.lease_s,
            poll_interval_s=t.poll_interval_s,
            request_min_interval_s=t.request_min_interval_s,
        ),
        policy_of(s),
        Backoff(initial=t.backoff_base_s, maximum=t.backoff_cap_s, jitter=0.5),
        metrics,
    )
    yield


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    """The producer is started by the relay (retrying while Kafka is away) and stopped here."""
    s = app[SETTINGS]
    producer = Producer(s.kafka_bootstrap_servers, client_id=f"auth-{app[INSTANCE]}")
    app[PRODUCER] = producer
    app[RELAY] = OutboxRelay(app[BACKGROUND_POOL], s.schema, producer)
    app[REFRESH_REQUESTS] = refresh_request_loop(
        s.kafka_bootstrap_servers,
        s.topic_prefix,
        s.consumer_group,
        app[REFRESHER].handle_request,
        client_id=f"auth-{app[INSTANCE]}",
        on_lag=app[METRICS].shared.set_lag,
        on_bad=lambda topic, code: app[METRICS].shared.state_event_bad.labels(topic, code).inc(),
    )
    try:
        yield
    finally:
        await producer.stop()


KAFKA_CHECK = web.AppKey("kafka_check", KafkaConnectivity)
TOPICS = web.AppKey("topics", TopicGate)


def _auth_topics(s: Settings) -> list[TopicSpec]:
    """Our topics, with their compaction/retention."""
    specs = standard_topics(s.topic_prefix)
    return [specs[TOPIC_ACCOUNTS], specs[TOPIC_ACCESS_TOKENS], specs[TOPIC_TOKEN_REFRESH_REQUESTED]]


async def _loops(app: web.Application) -> AsyncIterator[None]:
    """Every long-running part is ``run(stopping)``. The Kafka check gates the parts that talk to
    Kafka; then the relay's part ensures the topics (created only with KAFKA_MANAGE_TOPICS=true),
    and the consumer waits for that."""
    loops, relay, check, topics = app[LOOPS], app[RELAY], app[KAFKA_CHECK], app[TOPICS]
    backlog = BacklogGauge(relay, app[METRICS].outbox_backlog.labels("auth").set)
    loops.add("kafka-check", check.run, restart_delay=5.0, health=check.health)
    loops.add("refresh", app[REFRESHER].run)
    loops.add(
        "outbox-relay",
        check.gating(topics.ensuring_first(relay.run)),
        restart_delay=2.0,
        health=lambda: check.health() or topics.health() or relay.health(),
    )
    loops.add("refresh-requests", topics.waiting_first(app[REFRESH_REQUESTS].run), restart_delay=5.0)
    loops.add("revoke-retries", app[REVOKE_RETRIES].run, restart_delay=5.0)
    loops.add("housekeeping", Housekeeping(app[BACKGROUND_REPOSITORY]).run, restart_delay=60.0)
    loops.add("outbox-gauge", backlog.run, restart_delay=10.0)
    async with loops:
        yield


def register_log_secrets(settings: Settings) -> None:
    """Every configured secret is masked in the logs (common.logging)."""
    register_secret(settings.tiktok_client_secret.get())
    register_secret(settings.api_key.get())
    register_secret(settings.connect_handoff_key.get())
    register_dsn_password(settings.database_url.get())
    register_key_material([*settings.token_keys.keys.values(), *settings.transport_keys.keys.values()])
    kafka_security = security_from_env()  # a bad combination stops the start (ConfigError)
    if kafka_security.sasl_password is not None:
        register_secret(kafka_security.sasl_password.get())


def create_app(settings: Settings) -> web.Application:
    register_log_secrets(settings)
    configure_tracing("auth_service", os.environ)  # off unless OTEL_* ask
    metrics = Metrics.create()
    app = web.Application(
        middlewares=[
            correlation_middleware,
            error_middleware,
            api_key_middleware(settings.api_key.get(), [MANAGEMENT_PREFIX]),
        ]
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    observe_http(app, metrics.registry)
    app[INSTANCE] = instance_name(settings)
    manage_topics = manage_topics_from_env()
    app[KAFKA_CHECK] = KafkaConnectivity(
        settings.kafka_bootstrap_servers, _auth_topics(settings), manage_topics=manage_topics
    )
    app[TOPICS] = TopicGate(settings.kafka_bootstrap_servers, _auth_topics(settings), manage=manage_topics)
    app[LOOPS] = BackgroundLoops(shutdown_deadline=settings.shutdown_deadline_s)
    for ctx in (_database, _http, _handlers, _kafka, _loops):
        app.cleanup_ctx.append(ctx)

    async def database_ready() -> None:
        await app[REPOSITORY].ping()

    async def loops_ready() -> None:
        await app[LOOPS].check()

    async def kafka_ready() -> None:
        """Authentication, TLS, a missing topic: named here (the parts wait for Kafka meanwhile)."""
        problem = app[KAFKA_CHECK].health() or app[TOPICS].health()
        if problem is not None:
            raise PublicReason(problem, public_reason(problem))

    add_routes(app)
    add_health_routes(
        app,
        metrics.registry,
        {"database": database_ready, "kafka": kafka_ready, "loops": loops_ready},
        metrics_port=settings.metrics_port,
        metrics_host=settings.http_host,
    )
    return app
