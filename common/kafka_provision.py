"""Topics the way operators own them: create what is missing, change only the settings we own.

The work is done by ``common.kafka.topics`` (``ensure_topics``, which changes existing topics with
IncrementalAlterConfigs only, and ``TopicGate``); this module adds the operator-facing pieces:
``KAFKA_MANAGE_TOPICS`` (may a service create and change topics itself?) and the
``min.insync.replicas`` the CLI's ``create-topics`` sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from common.kafka.incremental import incremental_set as _incremental_set
from common.kafka.topics import (
    TopicAction,
    TopicPlan,
    TopicSpec,
    ensure_topics,
    missing_topics,
    plan_topic,
)
from common.settings import EnvReader

__all__ = [
    "TopicChange",
    "TopicPlan",
    "_incremental_set",
    "apply_topics",
    "manage_topics_from_env",
    "missing_topics",
    "plan_topic",
    "with_min_insync",
]

TopicChange = TopicAction  # created / unchanged / updated


def with_min_insync(specs: Iterable[TopicSpec], min_insync_replicas: int) -> list[TopicSpec]:
    """The specs with ``min.insync.replicas`` added to the settings they own."""
    return [
        TopicSpec(
            s.name,
            s.partitions,
            s.replication_factor,
            {**s.config, "min.insync.replicas": str(min_insync_replicas)},
        )
        for s in specs
    ]


def manage_topics_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """``KAFKA_MANAGE_TOPICS`` (default false): may a service create and change topics itself?"""
    return EnvReader(environ).boolean("KAFKA_MANAGE_TOPICS", False)


async def apply_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec], *, request_timeout_ms: int = 30_000
) -> dict[str, TopicAction]:
    """Create the missing topics, SET the owned settings that differ on the others; idempotent."""
    return await ensure_topics(bootstrap_servers, specs, request_timeout_ms=request_timeout_ms)
