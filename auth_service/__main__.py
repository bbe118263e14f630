"""Run auth_service.

    python -m auth_service               serve HTTP and run the refresh loop, relay and consumer
    python -m auth_service migrate       apply the database migrations and exit
    python -m auth_service rotate-keys   re-encrypt every stored ciphertext under the active keys

SIGTERM (and Ctrl-C) shut down gracefully: the listener closes, requests in flight finish, the
background loops stop claiming work and finish their refreshes within SHUTDOWN_DEADLINE_S,
then connections close. Keep that deadline below Kubernetes' terminationGracePeriodSeconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from auth_service.adapters.postgres import Repository
from auth_service.app import MIGRATIONS, create_app, register_log_secrets, vault_of
from auth_service.handlers.keys import rotate_keys
from auth_service.settings import Settings
from common.db import create_pool, migrate
from common.errors import ConfigError
from common.kafka_provision import manage_topics_from_env
from common.kafka_security import security_from_env
from common.logging import configure_logging


async def _rotate(settings: Settings, batch_size: int) -> None:
    await migrate(settings.database_url.get(), settings.schema, MIGRATIONS)
    async with create_pool(settings.database_url.get(), min_size=1, max_size=2) as pool:
        repo = Repository(
            pool, vault_of(settings), schema=settings.schema, topic_prefix=settings.topic_prefix
        )
        report = await rotate_keys(repo, batch_size=batch_size)
    print(
        f"rotated: {report.ciphertexts_rewritten} ciphertexts rewritten, "
        f"{report.tokens_reannounced} access tokens re-announced, {report.states_rewritten} OAuth states"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    sub.add_parser("migrate", help="apply database migrations")
    rotate = sub.add_parser("rotate-keys", help="re-encrypt every ciphertext under the active key")
    rotate.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        security_from_env()  # the Kafka client settings: a missing or contradictory one stops here
        manage_topics_from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    register_log_secrets(settings)

    if args.command == "migrate":
        applied = asyncio.run(migrate(settings.database_url.get(), settings.schema, MIGRATIONS))
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
        return 0
    if args.command == "rotate-keys":
        asyncio.run(_rotate(settings, args.batch_size))
        return 0
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=settings.shutdown_deadline_s,
        access_log=None,
        print=None,
        handle_signals=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
