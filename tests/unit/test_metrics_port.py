"""METRICS_PORT: read and checked at start (common.metrics_site.read_metrics_port)."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.metrics_site import read_metrics_port
from common.settings import EnvReader


@pytest.mark.parametrize(
    ("environ", "http_port", "expected"),
    [
        ({}, 8082, None),
        ({"METRICS_PORT": ""}, 8082, None),
        ({"METRICS_PORT": "9090"}, 8082, 9090),
        ({"METRICS_PORT": " 9090 "}, 8081, 9090),
        ({"METRICS_PORT": "65535"}, 8081, 65535),
    ],
)
def test_metrics_port_read(environ: dict[str, str], http_port: int, expected: int | None) -> None:
    assert read_metrics_port(EnvReader(environ), http_port) == expected


@pytest.mark.parametrize(
    ("value", "http_port", "message"),
    [
        ("nine", 8082, "METRICS_PORT must be an integer"),
        ("0", 8082, "METRICS_PORT must be a TCP port"),
        ("65536", 8082, "METRICS_PORT must be a TCP port"),
        ("-1", 8082, "METRICS_PORT must be a TCP port"),
        ("8082", 8082, "METRICS_PORT (8082) must differ from HTTP_PORT"),
    ],
)
def test_metrics_port_refused(value: str, http_port: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_metrics_port(EnvReader({"METRICS_PORT": value}), http_port)
    assert message in caught.value.message
