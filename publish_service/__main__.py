"""``python -m publish_service``: read settings, configure logs, run the app until SIGTERM/SIGINT.

aiohttp turns SIGTERM into a graceful exit: the server stops accepting, then the cleanup contexts
run in reverse: workers stop claiming and checkpoint their uploads after the chunk in flight (within
SHUTDOWN_DEADLINE_S), offsets are committed, the outbox relay flushes, the pool closes.
"""

from __future__ import annotations

import sys

import structlog
from aiohttp import web

from common.errors import ConfigError
from common.logging import configure_logging
from publish_service.app import create_app
from publish_service.settings import Settings


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"publish_service: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    structlog.get_logger("publish_service").info(
        "publish_service_starting",
        instance=settings.instance_id,
        http=f"{settings.http_host}:{settings.http_port}",
    )
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.shutdown_deadline_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
