"""Kafka's IncrementalAlterConfigs (KIP-339): change named topic settings, leave every other one alone.

Kafka's plain AlterConfigs replaces a topic's whole override set, wiping whatever an operator (or
Strimzi's topic operator) set. aiokafka's admin client has no incremental call, so
:class:`IncrementalAlterConfigsRequest` sends it with aiokafka's own protocol classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import aiokafka.errors as ak_errors
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from common.kafka.errors import translate_error

__all__ = ["IncrementalAlterConfigsRequest", "incremental_set"]

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


async def incremental_set(admin: Any, topic: str, changes: Mapping[str, str]) -> None:
    """SET ``changes`` on ``topic`` through a started admin client; other keys keep their values."""
    response = await admin._send_request(IncrementalAlterConfigsRequest(topic, changes))
    for error_code, error_message, *_ in response.responses:
        if error_code != 0:
            error = ak_errors.for_code(error_code)
            raise translate_error(error(f"changing the config of topic {topic}: {error_message}"))
