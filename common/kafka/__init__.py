"""Kafka: topic provisioning, an idempotent producer, a manually committed consumer and the consume loop.

One module per concern, all re-exported here:

- ``clients``: the one place aiokafka clients are constructed;
- ``errors``: aiokafka's errors translated into a small tree (``KafkaUnavailable`` is transient);
- ``topics``: topic names, ``standard_topics``, ``ensure_topics`` and ``TopicGate`` (the admin client);
- ``incremental``: IncrementalAlterConfigs, so changing a topic never wipes an operator's settings;
- ``producer``: ``Producer`` (idempotent, acknowledged sends, per-partition ordered batches);
- ``consumer``: ``Consumer`` (group member, commits only what it is told);
- ``consume``: ``ConsumeLoop``, decode → typed handler → commit → lag, for every service.
"""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from common.kafka.consume import ConsumeLoop, Decoded, Undecodable
from common.kafka.consumer import Consumer, RebalanceHook
from common.kafka.errors import KafkaError, KafkaPublishFailed, KafkaUnavailable, translate_error
from common.kafka.producer import Delivered, Headers, OutgoingMessage, Producer
from common.kafka.topics import (
    DAY_MS,
    DEFAULT_PARTITIONS,
    TOPIC_ACCESS_TOKENS,
    TOPIC_ACCOUNT_STATS,
    TOPIC_ACCOUNTS,
    TOPIC_POST_METRICS,
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
    TOPIC_TOKEN_REFRESH_REQUESTED,
    TopicAction,
    TopicGate,
    TopicPlan,
    TopicSpec,
    describe_topic_config,
    ensure_topics,
    missing_topic_reason,
    missing_topics,
    plan_topic,
    standard_topics,
)

__all__ = [
    "DAY_MS",
    "DEFAULT_PARTITIONS",
    "TOPIC_ACCESS_TOKENS",
    "TOPIC_ACCOUNTS",
    "TOPIC_ACCOUNT_STATS",
    "TOPIC_POST_METRICS",
    "TOPIC_POST_REQUESTED",
    "TOPIC_POST_REQUESTED_DLQ",
    "TOPIC_POST_STATUS",
    "TOPIC_TOKEN_REFRESH_REQUESTED",
    "ConsumeLoop",
    "Consumer",
    "ConsumerRecord",
    "Decoded",
    "Delivered",
    "Headers",
    "KafkaError",
    "KafkaPublishFailed",
    "KafkaUnavailable",
    "OutgoingMessage",
    "Producer",
    "RebalanceHook",
    "TopicAction",
    "TopicGate",
    "TopicPartition",
    "TopicPlan",
    "TopicSpec",
    "Undecodable",
    "describe_topic_config",
    "ensure_topics",
    "missing_topic_reason",
    "missing_topics",
    "plan_topic",
    "standard_topics",
    "translate_error",
]
