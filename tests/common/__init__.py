"""Integration tests of common/: real Kafka, PostgreSQL and S3 from the shared stack fixtures."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from common.kafka import (
    Consumer,
    Delivered,
    KafkaError,
    OutgoingMessage,
    TopicPartition,
    describe_topic_config,
)
from common.kafka.clients import new_admin


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def send_all(producer: Any, messages: Sequence[OutgoingMessage]) -> list[Delivered]:
    """Send ``messages`` and wait for all; raise the first failure if any record failed."""
    results = await producer.send_batch_settled(messages)
    for r in results:
        if isinstance(r, KafkaError):
            raise r
    return [r for r in results if isinstance(r, Delivered)]


async def committed(consumer: Consumer, tp: TopicPartition) -> int | None:
    """The group's committed next-to-read offset for ``tp``, or ``None`` if none."""
    offset: int | None = await consumer.raw.committed(tp)
    return offset


async def fetch_topic_config(bootstrap_servers: str, topic: str) -> dict[str, str]:
    """The effective config of ``topic`` (defaults included), with a short-lived admin client."""
    admin = new_admin(bootstrap_servers)
    try:
        await admin.start()
        return await describe_topic_config(admin, topic)
    finally:
        await admin.close()
