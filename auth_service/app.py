"""Wiring: ``create_app(settings)`` builds the aiohttp app; every resource is a cleanup_ctx entry.

Start order (stop order is the reverse): database pool (migrations applied) → HTTP session and TikTok
client → handlers → Kafka producer and outbox relay → background loops (refresh, relay, consumer,
housekeeping). Nothing is created at import time.
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
from auth_service.domain.schedule import RefreshPolicy
from auth_service.handlers.accounts import Accounts
from auth_service.handlers.connect import ConnectConfig, ConnectFlow
from auth_service.handlers.refresh import Housekeeping, RefreshConfig, Refresher
from auth_service.keys import (
    ACCOUNTS,
    CONNECT,
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
    standard_topics,
)
from common.logging import register_secret
from common.outbox import BacklogGauge, OutboxRelay
from common.tasks import BackgroundLoops
from common.tiktok.client import TikTokClient
from common.tracing import configure_tracing
from common.web import add_health_routes, api_key_middleware, correlation_middleware, error_middleware

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
    async with create_pool(s.database_url.get(), min_size=s.db_pool_min, max_size=s.db_pool_max) as pool:
        applied = await apply_migrations(pool, s.schema, MIGRATIONS)
        if applied:
            log.info("migrations_applied", files=applied)
        app[POOL] = pool
        app[REPOSITORY] = Repository(pool, vault_of(s), schema=s.schema, topic_prefix=s.topic_prefix)
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
        ),
        policy_of(s),
        metrics,
    )
    app[ACCOUNTS] = Accounts(repo, tiktok)
    app[REFRESHER] = Refresher(
        repo,
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
    app[RELAY] = OutboxRelay(app[POOL], s.schema, producer)
    app[REFRESH_REQUESTS] = refresh_request_loop(
        s.kafka_bootstrap_servers,
        s.topic_prefix,
        s.consumer_group,
        app[REFRESHER].handle_request,
        client_id=f"auth-{app[INSTANCE]}",
        on_lag=app[METRICS].shared.set_lag,
    )
    try:
        yield
    finally:
        await producer.stop()


async def _loops(app: web.Application) -> AsyncIterator[None]:
    """Every long-running part is ``run(stopping)``; the relay's loop first ensures the topics (with
    their compaction/retention), and the consumer waits for that."""
    s, loops, relay = app[SETTINGS], app[LOOPS], app[RELAY]
    specs = standard_topics(s.topic_prefix)
    topics = TopicGate(
        s.kafka_bootstrap_servers,
        [specs[TOPIC_ACCOUNTS], specs[TOPIC_ACCESS_TOKENS], specs[TOPIC_TOKEN_REFRESH_REQUESTED]],
    )
    backlog = BacklogGauge(relay, app[METRICS].outbox_backlog.labels("auth").set)
    loops.add("refresh", app[REFRESHER].run)
    loops.add(
        "outbox-relay",
        topics.ensuring_first(relay.run),
        restart_delay=2.0,
        health=lambda: topics.health() or relay.health(),
    )
    loops.add("refresh-requests", topics.waiting_first(app[REFRESH_REQUESTS].run), restart_delay=5.0)
    loops.add("housekeeping", Housekeeping(app[REPOSITORY]).run, restart_delay=60.0)
    loops.add("outbox-gauge", backlog.run, restart_delay=10.0)
    async with loops:
        yield


def create_app(settings: Settings) -> web.Application:
    register_secret(settings.tiktok_client_secret.get())
    register_secret(settings.api_key.get())
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
    app[LOOPS] = BackgroundLoops(shutdown_deadline=settings.shutdown_deadline_s)
    for ctx in (_database, _http, _handlers, _kafka, _loops):
        app.cleanup_ctx.append(ctx)

    async def database_ready() -> None:
        await app[REPOSITORY].ping()

    async def loops_ready() -> None:
        await app[LOOPS].check()

    add_routes(app)
    add_health_routes(
        app,
        metrics.registry,
        {"database": database_ready, "loops": loops_ready},
        metrics_port=settings.metrics_port,
        metrics_host=settings.http_host,
    )
    return app
