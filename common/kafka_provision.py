"""Topics the way operators own them: create what is missing, change only the settings we own.

Kafka's plain AlterConfigs replaces a topic's whole override set, wiping whatever an operator (or
Strimzi's topic operator) set; IncrementalAlterConfigs (KIP-339) changes named keys only. aiokafka's
admin client has no incremental call, so :class:`IncrementalAlterConfigsRequest` sends it with
aiokafka's own protocol classes.

Services manage topics only when ``KAFKA_MANAGE_TOPICS=true`` (the local stack, the demo); otherwise
:func:`missing_topics` tells readiness which topic is absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

import aiokafka.errors as ak_errors
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from common.kafka import KafkaUnavailable, TopicSpec, describe_topic_config, translate_error
from common.kafka_security import client_security
from common.settings import EnvReader

log = structlog.get_logger(__name__)

_SET = 0  # IncrementalAlterConfigs operation: SET (1 DELETE, 2 APPEND, 3 SUBTRACT)
_TOPIC = 2  # ConfigResource type TOPIC


class IncrementalAlterConfigsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):  # type: ignore[misc]
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                (
                    "configs",
                    Array(
                        ("name", String("utf-8")),
                        ("config_operation", Int8),
                        ("value", String("utf-8")),
                    ),
                ),
            ),
        ),
        ("validate_only", Boolean),
    )


_IncrementalStruct: TypeAlias = IncrementalAlterConfigsRequest_v0


class IncrementalAlterConfigsRequest(Request[_IncrementalStruct]):  # type: ignore[misc]  # aiokafka is untyped
    """SET the given keys of one topic; every other key keeps its value."""

    API_KEY = 44

    def __init__(self, topic: str, changes: Mapping[str, str]) -> None:
        self._topic = topic
        self._changes = dict(changes)

    def build(self, request_struct_class: type[_IncrementalStruct]) -> _IncrementalStruct:
        configs = [(name, _SET, value) for name, value in sorted(self._changes.items())]
        return request_struct_class([(_TOPIC, self._topic, configs)], False)


class TopicChange(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    UPDATED = "updated"


@dataclass(frozen=True)
class TopicPlan:
    """What :func:`plan_topic` decided for one topic."""

    action: TopicChange
    changes: Mapping[str, str]


def plan_topic(spec: TopicSpec, exists: bool, current: Mapping[str, str]) -> TopicPlan:
    """Pure: create a missing topic; for an existing one, SET only the keys of the spec that differ.

    Keys the spec does not name are never touched, whatever their value.
    """
    if not exists:
        return TopicPlan(TopicChange.CREATED, dict(spec.config))
    changes = {k: v for k, v in spec.config.items() if current.get(k) != v}
    return TopicPlan(TopicChange.UPDATED if changes else TopicChange.UNCHANGED, changes)


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


def _admin(bootstrap_servers: str, request_timeout_ms: int) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=request_timeout_ms, **client_security()
    )


async def apply_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec], *, request_timeout_ms: int = 30_000
) -> dict[str, TopicChange]:
    """Create the missing topics, SET the owned settings that differ on the others; idempotent."""
    wanted = {s.name: s for s in specs}
    admin = _admin(bootstrap_servers, request_timeout_ms)
    result: dict[str, TopicChange] = {}
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for name, s in wanted.items() if name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
                    for s in missing
                ]
            )
            for topic, error_code, *rest in response.topic_errors:
                error = ak_errors.for_code(error_code)
                if error_code == 0:
                    result[topic] = TopicChange.CREATED
                    log.info("kafka_topic_created", topic=topic)
                elif error is not ak_errors.TopicAlreadyExistsError:
                    raise translate_error(error(f"creating topic {topic}: {rest[0] if rest else ''}"))
        await _wait_until_led(admin, list(wanted))
        for name, spec in wanted.items():
            if name in result:
                continue
            plan = plan_topic(spec, True, await describe_topic_config(admin, name))
            if plan.changes:
                await _incremental_set(admin, name, plan.changes)
                log.info("kafka_topic_config_set", topic=name, changed=sorted(plan.changes))
            result[name] = plan.action
    except ak_errors.KafkaError as e:
        raise translate_error(e) from e
    finally:
        await admin.close()
    return result


async def _wait_until_led(admin: Any, topics: list[str], within: float = 30.0) -> None:
    """Creation returns before every broker knows the topic: wait until each partition has a leader."""
    unknown = topics
    try:
        async with asyncio.timeout(within):
            while unknown:
                described = await admin.describe_topics(topics)
                unknown = [
                    t["topic"]
                    for t in described
                    if t["error_code"] or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])
                ]
                if unknown:
                    await asyncio.sleep(0.1)
    except TimeoutError as e:
        raise KafkaUnavailable(
            f"topics without a leader after {within:g}s: {', '.join(sorted(unknown))}"
        ) from e


async def _incremental_set(admin: Any, topic: str, changes: Mapping[str, str]) -> None:
    response = await admin._send_request(IncrementalAlterConfigsRequest(topic, changes))
    for error_code, error_message, *_ in response.responses:
        if error_code != 0:
            error = ak_errors.for_code(error_code)
            raise translate_error(error(f"changing the config of topic {topic}: {error_message}"))


async def missing_topics(
    bootstrap_servers: str, names: Iterable[str], *, request_timeout_ms: int = 10_000
) -> list[str]:
    """Which of ``names`` this client cannot see (absent, or not described to it by the ACLs)."""
    admin = _admin(bootstrap_servers, request_timeout_ms)
    try:
        await admin.start()
        present = set(await admin.list_topics())
        return sorted(set(names) - present)
    except ak_errors.KafkaError as e:
        raise translate_error(e) from e
    finally:
        await admin.close()
