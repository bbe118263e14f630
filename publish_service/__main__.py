"""Run publish_service.

    python -m publish_service            serve HTTP, consume requests, run the workers and the relay
    python -m publish_service migrate    apply the database migrations and exit

SIGTERM (and Ctrl-C) shut down gracefully: aiohttp stops accepting, then the cleanup contexts run in
reverse: workers stop claiming and checkpoint their uploads after the chunk in flight (all within
SHUTDOWN_DEADLINE_S; keep it below Kubernetes' terminationGracePeriodSeconds), request offsets
already stored are committed, the outbox relay publishes what is left, and the pool closes last.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import structlog
from aiohttp import web

from common.db import migrate
from common.errors import ConfigError
from common.kafka_provision import manage_topics_from_env
from common.kafka_security import security_from_env
from common.logging import configure_logging
from publish_service.app import MIGRATIONS, create_app
from publish_service.settings import Settings


async def _migrate(settings: Settings) -> None:
    applied = await migrate(settings.database_url.get(), settings.schema, MIGRATIONS)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m publish_service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        security_from_env()  # the Kafka client settings: a missing or contradictory one stops here
        manage_topics_from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        return 0
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
