"""auth_service settings: one frozen object, read from the environment in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from common.cipher import KeyRing
from common.errors import ConfigError
from common.metrics_site import read_metrics_port
from common.settings import EnvReader, Secret
from common.settings_checks import (
    api_key_strength,
    distinct_key_rings,
    https_unless_local,
    key_ring_entries,
)

DEFAULT_SCOPES = ("user.info.basic", "video.upload", "video.publish")
INSIGHTS_SCOPES = ("video.list", "user.info.stats")
"""Requested too when INSIGHTS_ENABLED (default on): post metrics and account stats (docs/insights.md).
A creator who does not grant them still connects and posts."""


def with_insights(scopes: tuple[str, ...], enabled: bool) -> tuple[str, ...]:
    return scopes + tuple(s for s in INSIGHTS_SCOPES if enabled and s not in scopes)

RENAMED = {"INSTANCE_ID": "AUTH_INSTANCE_ID", "SHUTDOWN_DEADLINE_S": "AUTH_SHUTDOWN_DEADLINE_S"}
"""New name → old name: the old names are read for one more release, with a warning."""


@dataclass(frozen=True)
class RefreshTuning:
    """How the refresh loop behaves; every value has a production default."""

    fraction: float = 0.8
    min_lead_s: float = 300.0
    jitter: float = 0.1
    poll_interval_s: float = 5.0
    concurrency: int = 20
    call_timeout_s: float = 15.0
    lease_s: float = 60.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    request_min_interval_s: float = 30.0
    """A refresh request that names no token version is ignored this soon after a refresh."""

    def __post_init__(self) -> None:
        # The lease must outlive the one TikTok call made under it, with room for the commit:
        # otherwise another replica could claim the account and spend the same refresh token.
        if self.lease_s < 2 * self.call_timeout_s:
            raise ConfigError(
                f"AUTH_REFRESH_LEASE_S ({self.lease_s}) must be at least twice "
                f"AUTH_REFRESH_CALL_TIMEOUT_S ({self.call_timeout_s})"
            )
        if self.concurrency < 1:
            raise ConfigError("AUTH_REFRESH_CONCURRENCY must be positive")


@dataclass(frozen=True)
class Settings:
    database_url: Secret
    kafka_bootstrap_servers: str
    tiktok_api_base: str
    tiktok_authorize_url: str
    tiktok_client_key: str
    tiktok_client_secret: Secret
    oauth_redirect_uri: str
    connect_success_url: str
    token_keys: KeyRing = field(repr=False)
    transport_keys: KeyRing = field(repr=False)
    api_key: Secret
    connect_handoff_key: Secret = field(default_factory=lambda: Secret(""))
    """Signs the hand-off to CONNECT_SUCCESS_URL; empty: derived from API_KEY (domain/handoff.py)."""
    topic_prefix: str = ""
    tiktok_app_type: Literal["web", "desktop"] = "web"
    tiktok_scopes: tuple[str, ...] = DEFAULT_SCOPES
    http_host: str = "127.0.0.1"
    http_port: int = 8081
    metrics_port: int | None = None  # METRICS_PORT: /metrics on its own port (common.metrics_site)
    schema: str = "auth"
    db_pool_min: int = 1
    db_pool_max: int = 10
    background_db_pool_max: int = 4
    """Connections only the refresh loop, outbox relay and housekeeping use: a flood of web requests
    cannot take them (#12.11)."""
    connect_per_minute: float = 10.0
    connect_burst: int = 10
    """/v1/connect per client address (token bucket); more is refused with 429 (#12.11)."""
    revoke_retry_base_s: float = 30.0
    revoke_retry_cap_s: float = 3600.0
    """A revoke TikTok did not accept on disconnect is retried with this backoff (#12.16)."""
    oauth_states_max: int = 10_000
    """Sign-ins in progress (live OAuth states) at most; more is refused with 503 (#12.11)."""
    consumer_group: str = "auth-service"
    instance_id: str = ""
    """Names this replica in leases; empty means host name + pid + random suffix, chosen at start."""
    refresh: RefreshTuning = field(default_factory=RefreshTuning)
    shutdown_deadline_s: float = 20.0
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = EnvReader(environ, renamed=RENAMED)
        app_type = env.string("TIKTOK_APP_TYPE", "web")
        if app_type not in ("web", "desktop"):
            raise ConfigError(f"TIKTOK_APP_TYPE must be web or desktop, got {app_type!r}")
        defaults = RefreshTuning()
        tuning = RefreshTuning(
            fraction=env.number("AUTH_REFRESH_FRACTION", defaults.fraction),
            min_lead_s=env.number("AUTH_REFRESH_MIN_LEAD_S", defaults.min_lead_s),
            jitter=env.number("AUTH_REFRESH_JITTER", defaults.jitter),
            poll_interval_s=env.number("AUTH_REFRESH_POLL_INTERVAL_S", defaults.poll_interval_s),
            concurrency=env.integer("AUTH_REFRESH_CONCURRENCY", defaults.concurrency),
            call_timeout_s=env.number("AUTH_REFRESH_CALL_TIMEOUT_S", defaults.call_timeout_s),
            lease_s=env.number("AUTH_REFRESH_LEASE_S", defaults.lease_s),
            backoff_base_s=env.number("AUTH_REFRESH_BACKOFF_BASE_S", defaults.backoff_base_s),
            backoff_cap_s=env.number("AUTH_REFRESH_BACKOFF_CAP_S", defaults.backoff_cap_s),
            request_min_interval_s=env.number(
                "AUTH_REFRESH_REQUEST_MIN_INTERVAL_S", defaults.request_min_interval_s
            ),
        )
        settings = cls(
            database_url=env.secret("DATABASE_URL"),
            kafka_bootstrap_servers=env.string("KAFKA_BOOTSTRAP_SERVERS"),
            topic_prefix=env.string("TOPIC_PREFIX", ""),
            tiktok_api_base=env.string("TIKTOK_API_BASE", "https://open.tiktokapis.com"),
            tiktok_authorize_url=env.string(
                "TIKTOK_AUTHORIZE_URL", "https://www.tiktok.com/v2/auth/authorize/"
            ),
            tiktok_client_key=env.string("TIKTOK_CLIENT_KEY"),
            tiktok_client_secret=env.secret("TIKTOK_CLIENT_SECRET"),
            tiktok_app_type="desktop" if app_type == "desktop" else "web",
            tiktok_scopes=with_insights(
                env.strings("TIKTOK_SCOPES", DEFAULT_SCOPES), env.boolean("INSIGHTS_ENABLED", True)
            ),
            oauth_redirect_uri=env.string("OAUTH_REDIRECT_URI"),
            connect_success_url=env.string("CONNECT_SUCCESS_URL"),
            token_keys=_strict_ring(env, "TOKEN_KEYS", "TOKEN_ACTIVE_KEY_ID"),
            transport_keys=_strict_ring(env, "TRANSPORT_KEYS", "TRANSPORT_ACTIVE_KEY_ID"),
            api_key=env.secret("API_KEY"),
            connect_handoff_key=env.secret("CONNECT_HANDOFF_KEY", ""),
            http_host=env.string("HTTP_HOST", "127.0.0.1"),
            http_port=env.integer("HTTP_PORT", 8081),
            metrics_port=read_metrics_port(env, env.integer("HTTP_PORT", 8081)),
            db_pool_min=env.integer("AUTH_DB_POOL_MIN", 1),
            db_pool_max=env.integer("AUTH_DB_POOL_MAX", 10),
            background_db_pool_max=env.integer("AUTH_BACKGROUND_DB_POOL_MAX", 4),
            connect_per_minute=env.number("AUTH_CONNECT_PER_MINUTE", 10.0),
            connect_burst=env.integer("AUTH_CONNECT_BURST", 10),
            oauth_states_max=env.integer("AUTH_OAUTH_STATES_MAX", 10_000),
            revoke_retry_base_s=env.number("AUTH_REVOKE_RETRY_BASE_S", 30.0),
            revoke_retry_cap_s=env.number("AUTH_REVOKE_RETRY_CAP_S", 3600.0),
            consumer_group=env.string("AUTH_CONSUMER_GROUP", "auth-service"),
            instance_id=env.string("INSTANCE_ID", ""),
            refresh=tuning,
            shutdown_deadline_s=env.number("SHUTDOWN_DEADLINE_S", 20.0),
            log_level=env.string("LOG_LEVEL", "INFO"),
            log_format=env.string("LOG_FORMAT", "json"),
        )
        # #12.18: what KeyRing.parse would accept silently (a repeated id, stray characters, a zero
        # key, one key for both purposes), a guessable API key, and http to TikTok outside local mode.
        token_spec, transport_spec = env.secret("TOKEN_KEYS").get(), env.secret("TRANSPORT_KEYS").get()
        distinct_key_rings("TOKEN_KEYS", token_spec, "TRANSPORT_KEYS", transport_spec)
        api_key_strength("API_KEY", settings.api_key.get())
        for name, value in (
            ("AUTH_BACKGROUND_DB_POOL_MAX", settings.background_db_pool_max),
            ("AUTH_CONNECT_PER_MINUTE", settings.connect_per_minute),
            ("AUTH_CONNECT_BURST", settings.connect_burst),
            ("AUTH_OAUTH_STATES_MAX", settings.oauth_states_max),
            ("AUTH_REVOKE_RETRY_BASE_S", settings.revoke_retry_base_s),
        ):
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if settings.connect_handoff_key:
            api_key_strength("CONNECT_HANDOFF_KEY", settings.connect_handoff_key.get())
        https_unless_local(
            "TIKTOK_API_BASE", settings.tiktok_api_base, allow_http=env.boolean("TIKTOK_ALLOW_HTTP", False)
        )
        return settings


def _strict_ring(env: EnvReader, name: str, active_name: str) -> KeyRing:
    spec = env.secret(name).get()
    key_ring_entries(name, spec)  # refuses what KeyRing.parse would take silently (#12.18)
    return KeyRing.parse(spec, env.optional(active_name), name=name)
