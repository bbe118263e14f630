"""Prometheus metrics, one registry per app (no module-level collectors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "publish_requests_total", "Post requests consumed, by outcome", ["outcome"], registry=r
        )
        self.finished = Counter(
            "publish_posts_finished_total", "Posts that reached an end state", ["state"], registry=r
        )
        self.deferred = Counter(
            "publish_deferred_total", "Steps given back to wait, by reason", ["reason"], registry=r
        )
        self.tiktok_errors = Counter(
            "publish_tiktok_errors_total", "TikTok error answers", ["endpoint", "code"], registry=r
        )
        self.rate_waits = Counter(
            "publish_rate_window_waits_total",
            "Calls held back by our per-token window",
            ["endpoint"],
            registry=r,
        )
        self.inits = Counter("publish_inits_total", "Init calls that succeeded", ["source"], registry=r)
        self.reinits = Counter(
            "publish_reinits_total", "New inits after an upload URL stopped working", registry=r
        )
        self.chunk_retries = Counter(
            "publish_chunk_retries_total", "Chunk PUT retries by cause", ["cause"], registry=r
        )
        self.bytes_sent = Counter("publish_bytes_sent_total", "Video bytes TikTok acknowledged", registry=r)
        self.webhooks = Counter(
            "publish_webhooks_total", "Webhook deliveries by outcome", ["outcome"], registry=r
        )
        self.busy_workers = Gauge("publish_workers_busy", "Workers working on a post", registry=r)
