"""The publish_service test harness: the real service against real Kafka, Postgres, S3 and the sandbox.

The test plays auth_service: it issues tokens through the sandbox's control API and puts them on the
compacted topics, encrypted with a test transport key, exactly as auth_service would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from common.cipher import KeyRing, TokenCipher, generate_key, transport_purpose
from common.events import (
    AccessTokenData,
    AccountData,
    AccountStatus,
    EventType,
    PostRequestedData,
    PostState,
    PostStatusData,
    RefreshRequestedData,
    decode,
    encode,
)
from common.kafka import (
    TOPIC_ACCESS_TOKENS,
    TOPIC_ACCOUNTS,
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
    TOPIC_TOKEN_REFRESH_REQUESTED,
    Producer,
    ensure_topics,
    standard_topics,
)
from publish_service.app import create_app
from publish_service.settings import Settings
from tests.conftest import object_store
from tests.waiting import WaitTimeout, wait_for
from tiktok_sandbox.testing import RunningSandbox, SandboxApp

MIB = 1024 * 1024
API_KEY = "test-api-key-0123456789abcdef"
PARTITIONS = 3


def make_video(path: Path, seconds: int = 3, size: str = "720x1280") -> Path:
    """A real H.264 MP4 from ffmpeg's test source (moov at the end, as ffmpeg writes it)."""
    if path.exists():
        return path
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed for the publish tests (apt-get install ffmpeg)"
    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size={size}:rate=30",
            "-t",
            str(seconds),
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def make_image(path: Path) -> Path:
    if path.exists():
        return path
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg
    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x480",
            "-frames:v",
            "1",
            str(path),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


async def padded_video_pieces(header: bytes, total: int, piece: int = 8 * MIB) -> AsyncIterator[bytes]:
    """``header`` (a whole MP4) followed by a top-level ``free`` box of random bytes up to ``total``."""
    pad = total - len(header)
    assert pad >= 8
    yield header + pad.to_bytes(4, "big") + b"free"
    left = pad - 8
    while left > 0:
        n = min(piece, left)
        yield os.urandom(n)
        left -= n


@dataclass
class Uploaded:
    uri: str
    size: int
    sha256: str


@dataclass
class StatusLog:
    events: dict[str, list[PostStatusData]] = field(default_factory=lambda: defaultdict(list))
    dlq: list[tuple[bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)
    refresh: list[RefreshRequestedData] = field(default_factory=list)
    occurred_at: dict[tuple[str, int], datetime] = field(default_factory=dict)  # (post_id, seq) -> when

    def states(self, post_id: str) -> list[str]:
        return [e.state.value for e in self.events.get(post_id, [])]

    def last(self, post_id: str) -> PostStatusData | None:
        events = self.events.get(post_id)
        return events[-1] if events else None


class Harness:
    def __init__(
        self,
        *,
        stack: Any,
        database_url: str,
        topic_prefix: str,
        bucket: str,
        sandbox: RunningSandbox,
        tiktok_app: SandboxApp,
        transport_key: str,
    ) -> None:
        self.stack = stack
        self.database_url = database_url
        self.prefix = topic_prefix
        self.bucket = bucket
        self.sandbox = sandbox
        self.tiktok_app = tiktok_app
        self.transport_spec = f"k1:{transport_key}"
        self.cipher = TokenCipher(KeyRing.parse(self.transport_spec))
        self.log = StatusLog()
        self.producer = Producer(stack.kafka_bootstrap)
        self.store = object_store(stack)
        self.token_versions: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        self.open_ids: dict[str, str] = {}
        self._reader: asyncio.Task[None] | None = None

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a ``python -m publish_service`` subprocess."""
        env = {
            **self.stack.env(),
            "DATABASE_URL": self.database_url,
            "TOPIC_PREFIX": self.prefix,
            "TIKTOK_API_BASE": self.sandbox.base_url,
            "TIKTOK_CLIENT_KEY": self.tiktok_app.client_key,
            "TIKTOK_CLIENT_SECRET": self.tiktok_app.client_secret,
            "TRANSPORT_KEYS": self.transport_spec,
            "S3_ALLOWED_BUCKETS": self.bucket,
            "API_KEY": API_KEY,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": "0",
            "PUBLISH_WORKERS": "4",
            "PUBLISH_LEASE_S": "6",
            "TIKTOK_TIMEOUT_S": "5",
            "PUBLISH_TOKEN_WAIT_S": "20",
            "PUBLISH_UNKNOWN_ACCOUNT_GRACE_S": "3",
            "KAFKA_PARTITIONS": str(PARTITIONS),
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
        }
        env.update(overrides)
        return env

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.env(**overrides))

    async def start(self) -> None:
        await ensure_topics(
            self.stack.kafka_bootstrap, standard_topics(self.prefix, partitions=PARTITIONS).values()
        )
        await self.producer.start()
        await self.store.start()
        self._reader = asyncio.create_task(self._read_outputs())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.producer.stop()
        await self.store.stop()

    async def _read_outputs(self) -> None:
        topics = {
            self.topic(TOPIC_POST_STATUS): "status",
            self.topic(TOPIC_POST_REQUESTED_DLQ): "dlq",
            self.topic(TOPIC_TOKEN_REFRESH_REQUESTED): "refresh",
        }
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for r in records:
                        kind = topics[tp.topic]
                        if kind == "status":
                            envelope = decode(r.value, PostStatusData)
                            self.log.events[r.key.decode()].append(envelope.data)
                            self.log.occurred_at[(r.key.decode(), envelope.data.seq)] = envelope.occurred_at
                        elif kind == "dlq":
                            self.log.dlq.append((r.value, list(r.headers)))
                        else:
                            self.log.refresh.append(decode(r.value, RefreshRequestedData).data)
        finally:
            await consumer.stop()

    # ------------------------------------------------------------------ playing auth_service

    async def connect_account(
        self, account_id: str, creator: str, *, expires_in: int | None = None, scopes: list[str] | None = None
    ) -> str:
        issued = await self.sandbox.control.issue_token(self.tiktok_app.client_key, creator, scopes)
        self.open_ids[account_id] = issued.open_id
        await self.announce_token(
            account_id,
            issued.access_token,
            issued.open_id,
            issued.scope.split(","),
            expires_in=expires_in or issued.expires_in,
        )
        account = AccountData(
            account_id=account_id,
            open_id=issued.open_id,
            status=AccountStatus.connected,
            scopes=issued.scope.split(","),
            token_version=self.token_versions[account_id],
        )
        value, headers = encode(EventType.account_connected, account)
        await self.producer.send(self.topic(TOPIC_ACCOUNTS), account_id, value, headers)
        return issued.access_token

    async def announce_token(
        self, account_id: str, token: str, open_id: str, scopes: list[str], *, expires_in: int = 86400
    ) -> None:
        version = self.token_versions.get(account_id, 0) + 1
        self.token_versions[account_id] = version
        self.tokens[account_id] = token
        data = AccessTokenData(
            account_id=account_id,
            open_id=open_id,
            scopes=scopes,
            token_version=version,
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
            ciphertext=self.cipher.encrypt(token, account_id=account_id, purpose=transport_purpose(version)),
        )
        value, headers = encode(EventType.access_token, data)
        await self.producer.send(self.topic(TOPIC_ACCESS_TOKENS), account_id, value, headers)

    async def refresh_on_request(self, account_id: str, creator: str) -> None:
        """What auth_service does on a refresh request: a new token, a higher version."""
        issued = await self.sandbox.control.issue_token(self.tiktok_app.client_key, creator)
        await self.announce_token(account_id, issued.access_token, issued.open_id, issued.scope.split(","))

    # ------------------------------------------------------------------ media and requests

    async def put_file(self, key: str, path: Path) -> Uploaded:
        data = path.read_bytes()
        await self.store.put_bytes(self.bucket, key, data)
        return Uploaded(f"s3://{self.bucket}/{key}", len(data), hashlib.sha256(data).hexdigest())

    async def put_padded_video(self, key: str, header_video: Path, total: int) -> Uploaded:
        digest = hashlib.sha256()

        async def pieces() -> AsyncIterator[bytes]:
            async for piece in padded_video_pieces(header_video.read_bytes(), total):
                digest.update(piece)
                yield piece

        result = await self.store.upload_stream(pieces(), self.bucket, key, part_size=16 * MIB)
        assert result.size == total
        return Uploaded(f"s3://{self.bucket}/{key}", total, digest.hexdigest())

    async def request_post(
        self, fields: dict[str, Any] | None = None, *, raw: bytes | None = None, key: str | None = None
    ) -> str:
        """Put a post request on the topic, as an upstream would: ``fields`` (from
        ``payloads.post_request``) in an envelope keyed by the account, or ``raw`` bytes under ``key``."""
        if raw is not None:
            await self.producer.send(self.topic(TOPIC_POST_REQUESTED), key or "x", raw)
            return ""
        post = PostRequestedData.model_validate(fields)
        value, headers = encode(EventType.post_requested, post, correlation_id=f"corr-{post.post_id}")
        await self.producer.send(self.topic(TOPIC_POST_REQUESTED), post.account_id, value, headers)
        return post.post_id

    async def wait_state(self, post_id: str, state: str | PostState, timeout: float = 60.0) -> PostStatusData:
        target = str(state)

        def reached() -> PostStatusData | None:
            for e in self.log.events.get(post_id, []):
                if e.state.value == target:
                    return e
            return None

        try:
            return await wait_for(reached, timeout, 0.1, description=f"{post_id} to reach {target}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; states seen: {self.log.states(post_id)}") from None

    async def wait_event(
        self, post_id: str, predicate: Any, timeout: float = 60.0, what: str = ""
    ) -> PostStatusData:
        def found() -> PostStatusData | None:
            return next((e for e in self.log.events.get(post_id, []) if predicate(e)), None)

        try:
            return await wait_for(found, timeout, 0.1, description=f"{post_id}: {what}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; states seen: {self.log.states(post_id)}") from None


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[str]:
    """The real app in this process on a random port; yields its base URL."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                async with session.get(f"{base}/readyz") as response:
                    return response.status == 200

            await wait_for(ready, 60, 0.2, description="publish_service /readyz")
        yield base
    finally:
        await runner.cleanup()


def new_transport_key() -> str:
    return generate_key()
