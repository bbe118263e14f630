"""Helpers to run the real auth_service against the real stack and the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer

from auth_service.adapters.postgres import Repository
from auth_service.app import create_app
from auth_service.keys import REPOSITORY
from auth_service.settings import Settings
from common.cipher import KeyRing, TokenCipher, generate_key
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from tests.auth.seeding import SeedAccount, seed
from tiktok_sandbox.testing import RunningSandbox, SandboxApp

API_KEY = "test-api-key-" + "x" * 20


@dataclass(frozen=True)
class Keys:
    token_spec: str
    transport_spec: str

    @classmethod
    def fresh(cls) -> Keys:
        return cls(f"k1:{generate_key()}", f"t1:{generate_key()}")

    def transport_cipher(self) -> TokenCipher:
        return TokenCipher(KeyRing.parse(self.transport_spec))


def make_settings(**kwargs: Any) -> Settings:
    refresh = kwargs.pop("refresh", None)
    settings = Settings.from_env(settings_env(**kwargs))
    if refresh is not None:
        settings = dataclasses.replace(settings, refresh=refresh)
    return settings


def settings_env(
    *,
    stack: Any,
    database_url: str,
    topic_prefix: str,
    sandbox: RunningSandbox,
    app: SandboxApp,
    port: int,
    keys: Keys,
    kafka_bootstrap: str | None = None,
    instance_id: str = "",
    app_type: str = "web",
    scopes: tuple[str, ...] = ("user.info.basic", "video.upload", "video.publish"),
) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    env = {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap or stack.kafka_bootstrap,
        "KAFKA_MANAGE_TOPICS": "true",
        "TOPIC_PREFIX": topic_prefix,
        "TIKTOK_API_BASE": sandbox.base_url,
        "TIKTOK_AUTHORIZE_URL": sandbox.authorize_url,
        "TIKTOK_CLIENT_KEY": app.client_key,
        "TIKTOK_CLIENT_SECRET": app.client_secret,
        "TIKTOK_APP_TYPE": app_type,
        "TIKTOK_SCOPES": ",".join(scopes),
        "OAUTH_REDIRECT_URI": f"{base}/v1/oauth/callback",
        "CONNECT_SUCCESS_URL": f"{base}/v1/connected?from=test",
        "TOKEN_KEYS": keys.token_spec,
        "TRANSPORT_KEYS": keys.transport_spec,
        "API_KEY": API_KEY,
        "HTTP_PORT": str(port),
        "INSTANCE_ID": instance_id,
        "AUTH_REFRESH_POLL_INTERVAL_S": "0.5",
        "SHUTDOWN_DEADLINE_S": "10",
    }
    return env


@dataclass
class RunningAuth:
    app: web.Application
    base_url: str
    settings: Settings

    @property
    def repo(self) -> Repository:
        return self.app[REPOSITORY]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}


@contextlib.asynccontextmanager
async def running_auth(settings: Settings) -> AsyncIterator[RunningAuth]:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        yield RunningAuth(app, f"http://{settings.http_host}:{settings.http_port}", settings)
    finally:
        await runner.cleanup()


async def new_sandbox_app(sandbox: RunningSandbox, ports: list[int], **fields: Any) -> SandboxApp:
    return await sandbox.control.create_app(
        redirect_uris=[f"http://127.0.0.1:{p}/v1/oauth/callback" for p in ports], **fields
    )


async def seed_accounts(
    sandbox: RunningSandbox,
    repo: Repository,
    app: SandboxApp,
    count: int,
    *,
    due_in: float = 0.0,
    scopes: tuple[str, ...] = ("user.info.basic", "video.publish"),
    refresh_expires_in: float | None = None,
) -> list[SeedAccount]:
    """Create ``count`` creators with grants through the sandbox's control API; insert them as accounts.

    ``refresh_expires_in`` overrides the grant's (needed when the sandbox's answer omits it).
    """
    tag = secrets.token_hex(3)

    async def one(i: int) -> SeedAccount:
        username = f"creator{i}_{tag}"
        await sandbox.control.create_creator(username)
        grant = await sandbox.control.issue_token(app.client_key, username, list(scopes))
        return SeedAccount(
            account_id=f"acc_seed{i:05d}_{tag}",
            client_key=app.client_key,
            open_id=grant.open_id,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            scopes=scopes,
            access_expires_in=float(grant.expires_in),
            refresh_expires_in=float(
                refresh_expires_in if refresh_expires_in is not None else grant.refresh_expires_in or 0
            ),
            refresh_due_in=due_in,
        )

    seeds: list[SeedAccount] = []
    for start in range(0, count, 100):
        seeds += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
    await seed(repo, seeds)
    return seeds


class TopicReader:
    """Reads our two output topics from the beginning, collecting (topic, key, value, headers)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.topics = [prefix + TOPIC_ACCOUNTS, prefix + TOPIC_ACCESS_TOKENS]
        self._prefix = prefix
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=1000,
        )
        self.records: list[tuple[str, str, bytes | None, list[tuple[str, bytes]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.stop()

    async def _pump(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    self.records.append(
                        (r.topic, r.key.decode(), r.value, [(k, bytes(v)) for k, v in r.headers])
                    )

    def events(self, topic_suffix: str, event_type: str | None = None) -> list[dict[str, Any]]:
        out = []
        for topic, _key, value, _headers in self.records:
            if topic != self._prefix + topic_suffix or value is None:
                continue
            body = json.loads(value)
            if event_type is None or body["type"] == event_type:
                out.append(body)
        return out

    def tombstones(self, topic_suffix: str) -> list[str]:
        return [k for t, k, v, _ in self.records if t == self._prefix + topic_suffix and v is None]

    def matching(
        self, predicate: Callable[[dict[str, Any]], bool], topic_suffix: str
    ) -> list[dict[str, Any]]:
        return [e for e in self.events(topic_suffix) if predicate(e)]
