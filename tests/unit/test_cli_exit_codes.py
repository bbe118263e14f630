"""Which failure ends `tiktok-pipeline` with which exit code (a pure decision, by table)."""

import pytest

from common.errors import ConfigError, InvalidInput, NotFound, PipelineError, TransientError, Unauthorized
from common.kafka import KafkaError, KafkaUnavailable
from common.s3 import InvalidS3Uri, S3Unavailable
from tiktok_pipeline.cli import reach
from tiktok_pipeline.cli.errors import ExitCode, PostNotDone, Unreachable, exit_code_for, one_line


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Unreachable("Kafka", "127.0.0.1:1", "refused"), ExitCode.UNREACHABLE),
        (ConfigError("API_KEY is not set"), ExitCode.CONFIG),
        (Unauthorized("HTTP 401"), ExitCode.CONFIG),
        (InvalidInput("privacy_level: required"), ExitCode.USAGE),
        (InvalidS3Uri("no bucket"), ExitCode.USAGE),
        (PostNotDone("post p1 ended failed"), ExitCode.FAILED),
        (NotFound("no such account"), ExitCode.FAILED),
        (TransientError("HTTP 503"), ExitCode.FAILED),
        (KafkaError("record refused"), ExitCode.FAILED),
        (PipelineError("anything else"), ExitCode.FAILED),
    ],
)
def test_exit_code_for(error, code):
    assert exit_code_for(error) is code


@pytest.mark.parametrize(
    ("guard", "error", "dependency"),
    [
        (reach.kafka, KafkaUnavailable("Kafka unavailable: no broker"), "Kafka"),
        (reach.s3, S3Unavailable("object store unavailable"), "S3"),
        (reach.auth_service, TimeoutError(), "auth_service"),
    ],
)
def test_unreachable_dependencies_are_named(guard, error, dependency):
    with pytest.raises(Unreachable) as caught, guard("somewhere:1"):
        raise error
    assert caught.value.dependency == dependency
    assert caught.value.message.startswith(f"{dependency} is unreachable at somewhere:1")


def test_other_failures_pass_through_the_guards():
    with pytest.raises(KafkaError), reach.kafka("k:1"):
        raise KafkaError("record refused")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("one", "one"), ("first\nsecond", "first"), ("  \n", ""), ("x" * 400, "x" * 299 + "…")],
)
def test_one_line(text, expected):
    assert one_line(text) == expected
