"""Prometheus metrics, one registry per app (no module-level collectors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from common.metrics import SharedMetrics


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "tiktok_publish_requests_total", "Post requests consumed, by outcome", ["outcome"], registry=r
        )
        self.finished = Counter(
            "tiktok_publish_posts_finished_total", "Posts that reached an end state", ["state"], registry=r
        )
        self.deferred = Counter(
            "tiktok_publish_deferred_total", "Steps given back to wait, by reason", ["reason"], registry=r
        )
        self.tiktok_errors = Counter(
            "tiktok_publish_api_errors_total", "TikTok error answers", ["endpoint", "code"], registry=r
        )
        self.rate_waits = Counter(
            "tiktok_publish_rate_window_waits_total",
            "Calls held back by our per-token window",
            ["endpoint"],
            registry=r,
        )
        self.inits = Counter(
            "tiktok_publish_inits_total", "Init calls that succeeded", ["source"], registry=r
        )
        self.reinits = Counter(
            "tiktok_publish_reinits_total", "New inits after an upload URL stopped working", registry=r
        )
        # The dashboard's names (deploy/grafana): shared with auth_service where the concept is shared.
        self.shared = SharedMetrics.create(r)
        self.posts = Counter(
            "tiktok_posts", "Posts moving into each state (every transition)", ["state"], registry=r
        )
        self.posts_in_state = Gauge(
            "tiktok_posts_in_state", "Posts now in each state (from the database; alike on every replica)",
            ["state"], registry=r,
        )  # fmt: skip
        self.chunk_retries = Counter(
            "tiktok_upload_chunk_retries", "Chunk PUT retries by cause", ["cause"], registry=r
        )
        for cause in ("transport", "resync"):  # known causes exist from the start (0)
            self.chunk_retries.labels(cause)
        self.bytes_sent = Counter("tiktok_upload_bytes", "Video bytes TikTok acknowledged", registry=r)
        self.webhooks = Counter(
            "tiktok_publish_webhooks_total", "Webhook deliveries by outcome", ["outcome"], registry=r
        )
        self.busy_workers = Gauge("tiktok_publish_workers_busy", "Workers working on a post", registry=r)
        self.workers = Gauge("tiktok_publish_workers", "Workers this replica runs", registry=r)
        self.post_errors = Counter(
            "tiktok_publish_post_errors",
            "Posts that ended failed or rejected, by state and error code (a TikTok code or ours)",
            ["state", "code"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tiktok_publish_dead_letters",
            "Requests sent to the dead-letter topic, by code",
            ["code"],
            registry=r,
        )
        self.oldest_in_state = Gauge(
            "tiktok_posts_oldest_in_state_seconds",
            "Age of the oldest post in each unfinished state since it last changed (0: none)",
            ["state"],
            registry=r,
        )
