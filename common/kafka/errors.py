"""Kafka's errors, translated from aiokafka's many types into a small tree that says what to do.

``KafkaUnavailable`` is a ``TransientError`` (retrying later can help); ``KafkaPublishFailed`` and
plain ``KafkaError`` are not.
"""

from __future__ import annotations

import aiokafka.errors as ak_errors

from common.errors import PipelineError, TransientError

__all__ = ["KafkaError", "KafkaPublishFailed", "KafkaUnavailable", "translate_error"]


class KafkaError(PipelineError):
    """Something went wrong talking to Kafka."""

    code = "kafka_error"


class KafkaUnavailable(KafkaError, TransientError):
    """Kafka could not be reached or did not answer in time; trying again later can help."""

    code = "kafka_unavailable"


class KafkaPublishFailed(KafkaError):
    """Kafka refused a record for a reason that retrying won't fix (too large, not authorised…)."""

    code = "kafka_publish_failed"


def translate_error(exc: BaseException) -> KafkaError:
    """Map an aiokafka exception onto this module's tree (``raise translate_error(e) from e``)."""
    if isinstance(exc, KafkaError):
        return exc
    if isinstance(exc, ak_errors.KafkaTimeoutError | ak_errors.KafkaConnectionError | TimeoutError):
        return KafkaUnavailable(f"Kafka unavailable: {exc}")
    if isinstance(exc, ak_errors.UnknownTopicOrPartitionError):
        # Also what aiokafka raises when metadata can't be fetched in time because no broker answers.
        return KafkaUnavailable(f"topic unknown or Kafka unavailable: {exc}")
    if isinstance(exc, ak_errors.KafkaError) and exc.retriable:
        return KafkaUnavailable(f"Kafka: {exc}")
    if isinstance(exc, ak_errors.MessageSizeTooLargeError | ak_errors.RecordTooLargeError):
        return KafkaPublishFailed(f"record too large: {exc}")
    return KafkaError(f"Kafka: {exc}")

