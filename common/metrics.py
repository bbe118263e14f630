"""The metrics both services export under the same names (the dashboard and alerts rely on them).

Each app owns its ``CollectorRegistry`` (no module-level collectors), so several apps can run in one
process, as the tests do.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class SharedMetrics:
    api_calls: Counter
    api_seconds: Histogram
    outbox_backlog: Gauge
    consumer_lag: Gauge
    state_event_bad: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SharedMetrics:
        # The standard process_* (CPU, memory, open fds) and python_* (GC, version) collectors.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        return cls(
            api_calls=Counter(
                "tiktok_api_calls",
                "Calls to TikTok by endpoint and result (ok, a TikTok error code, or unreachable)",
                ["endpoint", "result"],
                registry=registry,
            ),
            api_seconds=Histogram(
                "tiktok_api_call_duration_seconds",
                "Duration of calls to TikTok",
                ["endpoint"],
                registry=registry,
                buckets=SECONDS_BUCKETS,
            ),
            outbox_backlog=Gauge(
                "tiktok_outbox_backlog",
                "Events committed in Postgres and not yet acknowledged by Kafka",
                ["service"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "tiktok_consumer_lag",
                "Records on a partition this replica has not handled yet",
                ["topic", "partition"],
                registry=registry,
            ),
            state_event_bad=Counter(
                "state_event_bad",
                "Records on a state topic skipped because they cannot be applied, by topic and code",
                ["topic", "code"],
                registry=registry,
            ),
        )

    def observe_call(self, endpoint: str, result: str, seconds: float) -> None:
        """A :class:`common.tiktok.client.TikTokClient` observer."""
        self.api_calls.labels(endpoint, result).inc()
        self.api_seconds.labels(endpoint).observe(seconds)

    def set_lag(self, topic: str, partition: int, lag: int | None) -> None:
        """A ``common.kafka.ConsumeLoop`` lag observer: ``None`` drops a partition no longer owned."""
        if lag is None:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(topic, str(partition))
            return
        self.consumer_lag.labels(topic, str(partition)).set(lag)
