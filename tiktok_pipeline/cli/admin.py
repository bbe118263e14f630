"""``migrate`` and ``rotate-keys``: each service owns its schema, migrations and key handling, so these
run the services' own commands (``python -m <service> ...``) and pass on their exit codes."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tiktok_pipeline.cli.output import notice
from tiktok_pipeline.cli.parsing import Subparsers
from tiktok_pipeline.cli.settings import CliSettings


async def run_service_command(module: str, *args: str) -> int:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args)
    return await process.wait()


async def cmd_migrate(_s: CliSettings, _args: argparse.Namespace) -> int:
    for module in ("auth_service", "publish_service"):
        notice(f"[bold]{module}[/bold]")
        code = await run_service_command(module, "migrate")
        if code:
            return code
    return 0


async def cmd_rotate_keys(_s: CliSettings, args: argparse.Namespace) -> int:
    return await run_service_command("auth_service", "rotate-keys", "--batch-size", str(args.batch_size))


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "migrate",
        help="apply both services' database migrations",
        description="Apply auth_service's and publish_service's database migrations (idempotent).",
        epilog_vars=("DATABASE_URL",),
    )
    p.set_defaults(run=cmd_migrate)

    p = sub.add_parser(
        "rotate-keys",
        help="re-encrypt every stored token under the active key",
        description="Re-encrypt every stored token under TOKEN_ACTIVE_KEY_ID (auth_service rotate-keys).",
        epilog_vars=("DATABASE_URL", "TOKEN_KEYS", "TOKEN_ACTIVE_KEY_ID"),
    )
    p.add_argument("--batch-size", type=int, default=200, help="tokens re-encrypted per transaction")
    p.set_defaults(run=cmd_rotate_keys)
