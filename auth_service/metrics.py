"""Prometheus metrics of one app instance (a registry per app, never a module-level global).

Names follow the project's dashboard and alert contract (deploy/README.md, "Metrics"):
``tiktok_token_refreshes_total{outcome}``, ``tiktok_api_calls_total{endpoint,result}``,
``tiktok_api_call_duration_seconds{endpoint}``, ``tiktok_outbox_backlog{service}`` and
``tiktok_consumer_lag{topic,partition}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.metrics import SharedMetrics

_SECONDS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    refreshes: Counter
    refresh_seconds: Histogram
    connects: Counter
    refresh_requests: Counter
    api_calls: Counter
    api_seconds: Histogram
    outbox_backlog: Gauge
    consumer_lag: Gauge
    shared: SharedMetrics

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        shared = SharedMetrics.create(registry)  # the names both services export alike
        metrics = cls(
            registry=registry,
            refreshes=Counter(
                "tiktok_token_refreshes",
                "Token refresh attempts by outcome (ok, retry, reauth_required, stale)",
                ["outcome"],
                registry=registry,
            ),
            refresh_seconds=Histogram(
                "tiktok_token_refresh_duration_seconds",
                "Duration of one refresh: the TikTok call and the commit",
                registry=registry,
                buckets=_SECONDS,
            ),
            connects=Counter(
                "tiktok_auth_oauth_callbacks",
                "OAuth callbacks by outcome (connected or an error code)",
                ["outcome"],
                registry=registry,
            ),
            refresh_requests=Counter(
                "tiktok_auth_refresh_requests",
                "tiktok.token.refresh-requested events by outcome (refreshed, skipped)",
                ["outcome"],
                registry=registry,
            ),
            api_calls=shared.api_calls,
            api_seconds=shared.api_seconds,
            outbox_backlog=shared.outbox_backlog,
            consumer_lag=shared.consumer_lag,
            shared=shared,
        )
        # Every outcome exists from the start (0), so rate() and the alerts see it before it happens.
        for outcome in ("ok", "retry", "reauth_required", "stale"):
            metrics.refreshes.labels(outcome)
        return metrics
