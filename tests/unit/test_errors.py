"""One notion of "dependency unavailable": TransientError, and is_retriable deciding every retry."""

import asyncpg
import pytest

from common.errors import (
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    PipelineError,
    TransientError,
    is_retriable,
)
from common.events import BadEvent
from common.kafka import KafkaError, KafkaPublishFailed, KafkaUnavailable
from common.s3 import S3Error, S3ObjectMissing, S3Unavailable


@pytest.mark.parametrize("cls", [KafkaUnavailable, S3Unavailable, DatabaseUnavailable])
def test_every_unavailable_dependency_is_a_transient_error(cls: type[PipelineError]) -> None:
    error = cls("away")
    assert isinstance(error, TransientError)
    assert (error.retriable, error.http_status) == (True, 503)


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (KafkaUnavailable("broker away"), True),
        (S3Unavailable("store away"), True),
        (DatabaseUnavailable("pg away"), True),
        (TransientError("later"), True),
        (asyncpg.PostgresConnectionError("lost"), True),
        (asyncpg.InterfaceError("closed"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (KafkaPublishFailed("too large"), False),
        (KafkaError("refused"), False),
        (S3Error("denied"), False),
        (S3ObjectMissing("gone"), False),
        (InvalidInput("bad"), False),
        (BadEvent("bad record"), False),
        (NotFound("nope"), False),
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
    ],
)
def test_is_retriable(error: BaseException, retriable: bool) -> None:
    assert is_retriable(error) is retriable
