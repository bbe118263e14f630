"""Prometheus metrics of one app instance (a registry per app, never a module-level global)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    refreshes: Counter
    refresh_seconds: Histogram
    connects: Counter
    refresh_requests: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            refreshes=Counter(
                "auth_token_refreshes",
                "Token refresh attempts by outcome (ok, retry, reauth_required, stale)",
                ["outcome"],
                registry=registry,
            ),
            refresh_seconds=Histogram(
                "auth_token_refresh_seconds",
                "Duration of one refresh: the TikTok call and the commit",
                registry=registry,
                buckets=(
                    0.005,
                    0.01,
                    0.02,
                    0.03,
                    0.05,
                    0.075,
                    0.1,
                    0.15,
                    0.2,
                    0.3,
                    0.5,
                    0.75,
                    1,
                    2.5,
                    5,
                    10,
                    30,
                ),
            ),
            connects=Counter(
                "auth_oauth_callbacks",
                "OAuth callbacks by outcome (connected or an error code)",
                ["outcome"],
                registry=registry,
            ),
            refresh_requests=Counter(
                "auth_refresh_requests",
                "tiktok.token.refresh-requested events by outcome (refreshed, skipped, invalid)",
                ["outcome"],
                registry=registry,
            ),
        )
