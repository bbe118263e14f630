"""Integration tests of common/: real Kafka, PostgreSQL and S3 from the shared stack fixtures."""

from __future__ import annotations

import socket


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
