"""publish_service settings: one frozen object, read from the environment in one place."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.cipher import KeyRing
from common.errors import ConfigError
from common.kafka import DEFAULT_PARTITIONS
from common.metrics_site import read_metrics_port
from common.settings import EnvReader, Secret
from common.settings_checks import api_key_strength, bounded_presign_ttl, https_unless_local, key_ring_entries
from common.tiktok.chunks import DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK
from common.tiktok.guard import DEFAULT_UPLOAD_DOMAINS
from publish_service.domain.insights import DEFAULT_SCHEDULE_S, parse_schedule

SCHEMA = "publish"


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Settings:
    database_url: Secret
    kafka_bootstrap_servers: str
    tiktok_api_base: str
    tiktok_client_key: str
    tiktok_client_secret: Secret
    transport_keys: KeyRing = field(repr=False)
    s3_endpoint_url: str | None
    s3_access_key_id: str | None
    s3_secret_access_key: Secret
    s3_region: str
    s3_allowed_buckets: tuple[str, ...]
    api_key: Secret
    topic_prefix: str = ""
    media_public_base_url: str | None = None  # PULL_FROM_URL: base + "/" + bucket + "/" + key
    presign_ttl_s: int = 3 * 3600
    http_host: str = "127.0.0.1"
    http_port: int = 8082
    metrics_port: int | None = None  # METRICS_PORT: /metrics on its own port (common.metrics_site)
    workers: int = 4
    chunk_size: int = DEFAULT_CHUNK
    stream_piece_bytes: int = 256 * 1024
    lease_s: float = 60.0
    claim_idle_s: float = 1.0
    shutdown_deadline_s: float = 20.0
    token_wait_s: float = 120.0  # how long a post waits for a refreshed token before asking again
    unknown_account_grace_s: float = 60.0
    """A post may arrive before its account's connect event: it waits this long before ``unknown_account``."""
    post_id_watch_s: float = 24 * 3600.0  # how long to keep polling for a public post id
    draft_poll_s: float = 3600.0  # a delivered draft's first status poll (fallback to the webhook)
    draft_poll_max_s: float = 6 * 3600.0  # the poll interval doubles up to this
    draft_lifetime_s: float = 7 * 24 * 3600.0  # TikTok documents none: how long a draft is followed
    webhook_tolerance_s: float = 300.0
    instance_id: str = field(default_factory=lambda: default_instance_id())
    """Names this replica in leases (INSTANCE_ID); each worker task leases as ``<instance_id>/w<n>``."""
    log_level: str = "INFO"
    log_format: str = "json"
    kafka_partitions: int = DEFAULT_PARTITIONS
    init_doubt_grace_s: float = 600.0  # how long a lost PULL init waits for a webhook naming it
    cap_retry_s: float = 900.0  # first retry after a daily cap (spam_risk_too_many_posts …), doubling
    tiktok_timeout_s: float = 30.0  # per API call; an init without an answer in time is "in doubt"
    upload_stall_timeout_s: float = 120.0  # a chunk PUT whose socket neither reads nor writes this long
    rate_window_s: float = 60.0  # TikTok's per-token window; a test sandbox may use a shorter one
    insights_enabled: bool = True  # INSIGHTS_ENABLED: post metrics and account stats (docs/insights.md)
    insights_schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S  # INSIGHTS_SCHEDULE, e.g. "1h,6h,24h,3d"
    insights_stats_interval_s: float = 86400.0  # INSIGHTS_STATS_INTERVAL_S: account stats once a day
    insights_poll_s: float = 5.0  # INSIGHTS_POLL_S: how often an idle fetcher looks for due work
    tiktok_upload_domains: tuple[str, ...] = DEFAULT_UPLOAD_DOMAINS
    webhook_receipts_keep_s: float = 7 * 24 * 3600.0  # > TikTok's 72 h of re-deliveries
    housekeeping_interval_s: float = 600.0  # how often old webhook receipts are pruned
    """TIKTOK_UPLOAD_DOMAINS: an init's upload_url must be https on a host under one of these (or on
    TIKTOK_API_BASE's own origin, e.g. the sandbox); the media goes nowhere else."""

    @property
    def schema(self) -> str:
        return SCHEMA

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = EnvReader(environ)
        chunk = env.integer("PUBLISH_CHUNK_SIZE", DEFAULT_CHUNK)
        if not MIN_CHUNK <= chunk <= MAX_CHUNK:
            raise ConfigError("PUBLISH_CHUNK_SIZE must be between 5 MiB and 64 MiB")
        try:
            schedule = parse_schedule(env.string("INSIGHTS_SCHEDULE", "1h,6h,24h,3d,7d,30d"))
        except ValueError as exc:
            raise ConfigError(f"INSIGHTS_SCHEDULE: {exc}") from None
        settings = cls(
            database_url=env.secret("DATABASE_URL"),
            kafka_bootstrap_servers=env.string("KAFKA_BOOTSTRAP_SERVERS"),
            topic_prefix=env.optional("TOPIC_PREFIX") or "",
            tiktok_api_base=env.string("TIKTOK_API_BASE", "https://open.tiktokapis.com"),
            tiktok_client_key=env.string("TIKTOK_CLIENT_KEY"),
            tiktok_client_secret=env.secret("TIKTOK_CLIENT_SECRET"),
            transport_keys=KeyRing.parse(
                env.secret("TRANSPORT_KEYS").get(),
                env.optional("TRANSPORT_ACTIVE_KEY_ID"),
                name="TRANSPORT_KEYS",
            ),
            s3_endpoint_url=env.optional("S3_ENDPOINT_URL"),
            s3_access_key_id=env.optional("S3_ACCESS_KEY_ID"),
            s3_secret_access_key=env.secret("S3_SECRET_ACCESS_KEY", ""),
            s3_region=env.string("S3_REGION", "us-east-1"),
            s3_allowed_buckets=env.strings("S3_ALLOWED_BUCKETS"),
            media_public_base_url=(env.optional("MEDIA_PUBLIC_BASE_URL") or "").rstrip("/") or None,
            presign_ttl_s=env.integer("MEDIA_PRESIGN_TTL_S", 3 * 3600),
            api_key=env.secret("API_KEY"),
            http_host=env.string("HTTP_HOST", "127.0.0.1"),
            http_port=env.integer("HTTP_PORT", 8082),
            metrics_port=read_metrics_port(env, env.integer("HTTP_PORT", 8082)),
            workers=env.integer("PUBLISH_WORKERS", 4),
            chunk_size=chunk,
            lease_s=env.number("PUBLISH_LEASE_S", 60.0),
            claim_idle_s=env.number("PUBLISH_CLAIM_IDLE_S", 1.0),
            shutdown_deadline_s=env.number("SHUTDOWN_DEADLINE_S", 20.0),
            instance_id=env.optional("INSTANCE_ID") or default_instance_id(),
            token_wait_s=env.number("PUBLISH_TOKEN_WAIT_S", 120.0),
            unknown_account_grace_s=env.number("PUBLISH_UNKNOWN_ACCOUNT_GRACE_S", 60.0),
            post_id_watch_s=env.number("PUBLISH_POST_ID_WATCH_S", 24 * 3600.0),
            draft_poll_s=env.number("PUBLISH_DRAFT_POLL_S", 3600.0),
            draft_poll_max_s=env.number("PUBLISH_DRAFT_POLL_MAX_S", 6 * 3600.0),
            draft_lifetime_s=env.number("PUBLISH_DRAFT_LIFETIME_S", 7 * 24 * 3600.0),
            log_level=env.string("LOG_LEVEL", "INFO"),
            log_format=env.string("LOG_FORMAT", "json"),
            kafka_partitions=env.integer("KAFKA_PARTITIONS", DEFAULT_PARTITIONS),
            rate_window_s=env.number("TIKTOK_RATE_WINDOW_S", 60.0),
            tiktok_upload_domains=env.strings("TIKTOK_UPLOAD_DOMAINS", DEFAULT_UPLOAD_DOMAINS),
            webhook_receipts_keep_s=env.number("PUBLISH_WEBHOOK_RECEIPTS_KEEP_S", 7 * 24 * 3600.0),
            housekeeping_interval_s=env.number("PUBLISH_HOUSEKEEPING_INTERVAL_S", 600.0),
            tiktok_timeout_s=env.number("TIKTOK_TIMEOUT_S", 30.0),
            upload_stall_timeout_s=env.number("PUBLISH_UPLOAD_STALL_TIMEOUT_S", 120.0),
            cap_retry_s=env.number("PUBLISH_CAP_RETRY_S", 900.0),
            init_doubt_grace_s=env.number("PUBLISH_INIT_DOUBT_GRACE_S", 600.0),
            insights_enabled=env.boolean("INSIGHTS_ENABLED", True),
            insights_schedule_s=schedule,
            insights_stats_interval_s=env.number("INSIGHTS_STATS_INTERVAL_S", 86400.0),
            insights_poll_s=env.number("INSIGHTS_POLL_S", 5.0),
        )
        key_ring_entries("TRANSPORT_KEYS", env.secret("TRANSPORT_KEYS").get())  # strict: #12.18
        api_key_strength("API_KEY", settings.api_key.get())
        https_unless_local(
            "TIKTOK_API_BASE", settings.tiktok_api_base, allow_http=env.boolean("TIKTOK_ALLOW_HTTP", False)
        )
        bounded_presign_ttl("MEDIA_PRESIGN_TTL_S", settings.presign_ttl_s)
        if settings.lease_s <= settings.tiktok_timeout_s:
            # A worker waiting on a slow TikTok call must still hold its lease when the answer comes.
            raise ConfigError("PUBLISH_LEASE_S must be longer than TIKTOK_TIMEOUT_S")
        if settings.workers < 1:
            raise ConfigError("PUBLISH_WORKERS must be at least 1")
        if not settings.s3_allowed_buckets:
            raise ConfigError("S3_ALLOWED_BUCKETS must name at least one bucket")
        return settings
