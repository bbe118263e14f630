"""The one place aiokafka clients are constructed (admin, producer, consumer).

Every Kafka connection of the project goes through these three functions, so options that every
client needs (connection security: common.kafka_security, from the KAFKA_SECURITY_PROTOCOL/SASL/SSL
variables) are added here once.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from common.kafka_security import client_security

__all__ = ["new_admin", "new_consumer", "new_producer"]


def new_admin(bootstrap_servers: str, **options: Any) -> Any:
    """An (unstarted) ``AIOKafkaAdminClient``."""
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options, **client_security())


def new_producer(**options: Any) -> Any:
    """An (unstarted) ``AIOKafkaProducer``; ``options`` include ``bootstrap_servers``."""
    return AIOKafkaProducer(**options, **client_security())


def new_consumer(*topics: str, **options: Any) -> Any:
    """An (unstarted) ``AIOKafkaConsumer``; ``options`` include ``bootstrap_servers``."""
    return AIOKafkaConsumer(*topics, **options, **client_security())
