"""The parser and ``main``: run one command, map any failure onto an exit code and one line."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from common.errors import PipelineError
from common.kafka_security import security_from_env
from common.logging import configure_logging
from tiktok_pipeline.cli import accounts, admin, dlq, metrics, posts, tail, topics
from tiktok_pipeline.cli.errors import ExitCode, exit_code_for, one_line
from tiktok_pipeline.cli.output import console
from tiktok_pipeline.cli.parsing import Parser
from tiktok_pipeline.cli.settings import CliSettings

DESCRIPTION = """The operator's command line of tiktok-pipeline: connect accounts, submit and follow posts,
manage topics, migrations, keys and dead letters.

Configured by the same environment variables as the services; each command's --help lists those it
reads."""


def package_version() -> str:
    try:
        return version("tiktok-pipeline")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> Parser:
    parser = Parser(prog="tiktok-pipeline", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (topics, admin, accounts, posts, metrics, tail, dlq):
        module.register(sub)
    return parser


Runner = Callable[[CliSettings, Any], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on a usage error, 0 on --help/--version
    # Logs (warnings and worse) go to stderr, never into the result on stdout. The Kafka client logs
    # every failed connection attempt; the command reports the failure itself, in one line, so that
    # log stays quiet (other loggers, e.g. asyncio's, still speak).
    configure_logging("WARNING", "console")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    runner: Runner = args.run
    try:
        settings = CliSettings.from_env()
        security_from_env()  # the Kafka client settings: a missing or contradictory one is exit 4
        return asyncio.run(runner(settings, args))
    except PipelineError as exc:
        code = exit_code_for(exc)
        label = {ExitCode.UNREACHABLE: "unreachable", ExitCode.CONFIG: "configuration error"}.get(
            code, "error"
        )
        console.print(f"[red]{label}:[/red] {one_line(exc.message)}", highlight=False, soft_wrap=True)
        return int(code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
