"""Turn "could not connect" failures of Kafka, auth_service and S3 into one :class:`Unreachable`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp

from common.kafka import KafkaUnavailable
from common.s3 import S3Unavailable
from tiktok_pipeline.cli.errors import Unreachable, one_line


@contextlib.contextmanager
def kafka(address: str) -> Iterator[None]:
    try:
        yield
    except KafkaUnavailable as exc:
        raise Unreachable("Kafka", address, one_line(exc.message)) from exc


@contextlib.contextmanager
def auth_service(address: str) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientConnectionError as exc:
        raise Unreachable("auth_service", address, one_line(str(exc) or type(exc).__name__)) from exc
    except TimeoutError as exc:
        raise Unreachable("auth_service", address, "no answer in time") from exc


@contextlib.contextmanager
def s3(address: str) -> Iterator[None]:
    try:
        yield
    except S3Unavailable as exc:
        raise Unreachable("S3", address, one_line(exc.message)) from exc
