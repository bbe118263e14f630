"""Wiring: ``create_app(settings)`` builds the aiohttp app; every resource is a cleanup_ctx entry.

Start order (stop order is the reverse): database pool (migrations applied) → HTTP session and TikTok
client → handlers → Kafka producer and outbox relay → background loops (refresh, relay, consumer,
housekeeping). Nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from auth_service.adapters.postgres import Repository
from auth_service.adapters.refresh_requests import RefreshRequestConsumer
from auth_service.adapters.vault import Vault
from auth_service.domain.schedule import Backoff, RefreshPolicy
from auth_service.handlers.accounts import Accounts
from auth_service.handlers.connect import ConnectConfig, ConnectFlow
from auth_service.handlers.refresh import DB_ERRORS, RefreshConfig, Refresher, housekeeping
from auth_service.metrics import Metrics
from auth_service.settings import Settings
from auth_service.web.keys import ACCOUNTS, CONNECT, SETTINGS
from auth_service.web.routes import MANAGEMENT_PREFIX, add_routes
from common.cipher import TokenCipher
from common.db import apply_migrations, create_pool
from common.kafka import (
    TOPIC_ACCESS_TOKENS,
    TOPIC_ACCOUNTS,
    TOPIC_TOKEN_REFRESH_REQUESTED,
    Producer,
    standard_topics,
)
from common.kafka_health import KafkaConnectivity
from common.kafka_provision import manage_topics_from_env
from common.kafka_security import security_from_env
from common.logging import register_secret
from common.outbox import OutboxRelay
from common.tasks import BackgroundLoops, sleep_or_stop
from common.tiktok.client import TikTokClient
from common.web import (
    ReadinessCheck,
    add_health_routes,
    api_key_middleware,
    correlation_middleware,
    error_middleware,
)

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

POOL = web.AppKey("pool", Any)
HTTP = web.AppKey("http", aiohttp.ClientSession)
TIKTOK = web.AppKey("tiktok", TikTokClient)
REPOSITORY = web.AppKey("repository", Repository)
REFRESHER = web.AppKey("refresher", Refresher)
PRODUCER = web.AppKey("producer", Producer)
RELAY = web.AppKey("relay", OutboxRelay)
CONSUMER = web.AppKey("consumer", RefreshRequestConsumer)
LOOPS = web.AppKey("loops", BackgroundLoops)
METRICS = web.AppKey("metrics", Metrics)
INSTANCE = web.AppKey("instance", str)


def instance_name(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def policy_of(settings: Settings) -> RefreshPolicy:
    t = settings.refresh
    return RefreshPolicy(fraction=t.fraction, min_lead_s=t.min_lead_s, jitter=t.jitter)


def vault_of(settings: Settings) -> Vault:
    return Vault(TokenCipher(settings.token_keys), TokenCipher(settings.transport_keys))


async def _database(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    async with create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max) as pool:
        applied = await apply_migrations(pool, s.db_schema, MIGRATIONS)
        if applied:
            log.info("migrations_applied", files=applied)
        app[POOL] = pool
        app[REPOSITORY] = Repository(pool, vault_of(s), schema=s.db_schema, topic_prefix=s.topic_prefix)
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
        Backoff(base_s=t.backoff_base_s, cap_s=t.backoff_cap_s),
        metrics,
    )
    yield


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    """The producer is started by the relay (retrying while Kafka is away) and stopped here."""
    s = app[SETTINGS]
    producer = Producer(s.kafka_bootstrap_servers, client_id=f"auth-{app[INSTANCE]}")
    app[PRODUCER] = producer
    app[RELAY] = OutboxRelay(app[POOL], s.db_schema, producer)
    app[CONSUMER] = RefreshRequestConsumer(
        s.kafka_bootstrap_servers,
        s.topic_prefix,
        s.consumer_group,
        app[REFRESHER].on_requested,
        client_id=f"auth-{app[INSTANCE]}",
        on_lag=app[METRICS].shared.set_lag,
    )
    try:
        yield
    finally:
        await producer.stop()


KAFKA_CHECK = web.AppKey("kafka_check", KafkaConnectivity)


def _kafka_check(s: Settings) -> KafkaConnectivity:
    """Our topics (with their compaction/retention): created only with KAFKA_MANAGE_TOPICS=true."""
    specs = standard_topics(s.topic_prefix)
    wanted = [specs[TOPIC_ACCOUNTS], specs[TOPIC_ACCESS_TOKENS], specs[TOPIC_TOKEN_REFRESH_REQUESTED]]
    return KafkaConnectivity(s.kafka_bootstrap_servers, wanted, manage_topics=manage_topics_from_env())


async def _loops(app: web.Application) -> AsyncIterator[None]:
    loops = app[LOOPS]
    stopping = loops.stopping
    relay, refresher, consumer, repo = app[RELAY], app[REFRESHER], app[CONSUMER], app[REPOSITORY]
    topics_ready = asyncio.Event()

    check = app[KAFKA_CHECK]

    async def relay_loop() -> None:
        if not topics_ready.is_set():
            if not await check.wait_ok(stopping):
                return
            topics_ready.set()
        async with asyncio.TaskGroup() as group:
            group.create_task(relay.run())
            await stopping.wait()
            relay.stop()

    async def consumer_loop() -> None:
        await topics_ready.wait()
        await consumer.run(stopping)

    loops.add("kafka-check", lambda: check.run(stopping), restart_delay=5.0)
    loops.add("refresh", lambda: refresher.run(stopping))
    loops.add("outbox-relay", relay_loop, restart_delay=2.0)
    loops.add("refresh-requests", consumer_loop, restart_delay=5.0)
    loops.add("housekeeping", lambda: housekeeping(repo, stopping), restart_delay=60.0)
    loops.add("outbox-gauge", lambda: _outbox_gauge(app, stopping), restart_delay=10.0)
    async with loops:
        yield


async def _outbox_gauge(app: web.Application, stopping: asyncio.Event) -> None:
    """Keep ``tiktok_outbox_backlog{service="auth"}`` current (every 5 s)."""
    gauge = app[METRICS].outbox_backlog.labels("auth")
    relay = app[RELAY]
    while True:
        try:
            gauge.set(await relay.backlog())
        except DB_ERRORS as exc:
            log.warning("outbox_backlog_unknown", error=f"{type(exc).__name__}: {exc}")
        if await sleep_or_stop(stopping, 5.0):
            return


def create_app(settings: Settings) -> web.Application:
    register_secret(settings.tiktok_client_secret.get())
    register_secret(settings.api_key.get())
    kafka_security = security_from_env()  # a bad combination stops the start (ConfigError)
    if kafka_security.sasl_password is not None:
        register_secret(kafka_security.sasl_password.get())
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
    app[INSTANCE] = instance_name(settings)
    app[KAFKA_CHECK] = _kafka_check(settings)
    app[LOOPS] = BackgroundLoops(shutdown_deadline=settings.shutdown_deadline_s)
    for ctx in (_database, _http, _handlers, _kafka, _loops):
        app.cleanup_ctx.append(ctx)

    async def database_ready() -> None:
        await app[REPOSITORY].ping()

    async def loops_ready() -> None:
        await app[LOOPS].check()

    add_routes(app)
    checks: dict[str, ReadinessCheck] = {
        "database": database_ready,
        "kafka": app[KAFKA_CHECK].ready,
        "loops": loops_ready,
    }
    add_health_routes(app, metrics.registry, checks)
    return app
