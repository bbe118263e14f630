"""``connect`` and ``accounts``: what auth_service knows about the connected TikTok accounts."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
from rich.table import Table

from common.errors import PipelineError, TransientError, Unauthorized
from tiktok_pipeline.cli import reach
from tiktok_pipeline.cli.output import emit_json, out
from tiktok_pipeline.cli.parsing import Subparsers
from tiktok_pipeline.cli.settings import AUTH_VARS, CliSettings


async def cmd_connect(s: CliSettings, args: argparse.Namespace) -> int:
    url = f"{s.auth_url}/v1/connect"
    if args.json:
        emit_json({"connect_url": url})
    else:
        out.print("Open this URL in the creator's browser to connect a TikTok account:")
        out.print(f"  {url}", highlight=False, soft_wrap=True)
    return 0


def http_failure(path: str, status: int, body: Any) -> PipelineError:
    """The error an answer other than 200 from auth_service becomes (its class decides the exit code)."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = f"auth_service {path}: HTTP {status} {error.get('code')}: {error.get('message')}"
    if status in (401, 403):
        return Unauthorized(message + " (is API_KEY auth_service's key?)")
    if status >= 500:
        return TransientError(message)
    return PipelineError(message)


async def _auth_get(s: CliSettings, session: aiohttp.ClientSession, path: str) -> Any:
    api_key = s.require_api_key()
    with reach.auth_service(s.auth_url):
        async with session.get(f"{s.auth_url}{path}", headers={"Authorization": f"Bearer {api_key}"}) as r:
            body = await r.json(content_type=None)
            status = r.status
    if status != 200:
        raise http_failure(path, status, body)
    return body


async def cmd_accounts(s: CliSettings, args: argparse.Namespace) -> int:
    s.require_api_key()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=args.http_timeout)) as session:
        body = await _auth_get(s, session, "/v1/accounts")
        accounts: list[dict[str, Any]] = body.get("accounts", []) if isinstance(body, dict) else []
        if args.check:
            for account in accounts:
                status = await _auth_get(s, session, f"/v1/accounts/{account['id']}/token-status")
                account["live"] = status.get("live", {}) if isinstance(status, dict) else {}
    if args.json:
        emit_json(accounts)
        return 0
    table = Table("account", "display name", "status", "scopes", "access expires", "live check")
    for account in accounts:
        live = ""
        if args.check:
            check = account.get("live", {})
            live = "valid" if check.get("valid") else f"invalid ({check.get('error') or 'unknown'})"
        table.add_row(
            account["id"],
            str(account.get("display_name") or ""),
            account.get("status", ""),
            ",".join(account.get("scopes", [])),
            str(account.get("access_expires_at") or ""),
            live,
        )
    out.print(table)
    return 0


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "connect",
        help="print the URL that connects a TikTok account",
        description="Print the URL a creator opens to connect a TikTok account (auth_service's /v1/connect).",
        epilog_vars=("AUTH_SERVICE_URL",),
    )
    p.add_argument("--json", action="store_true", help='print {"connect_url": URL} as JSON')
    p.set_defaults(run=cmd_connect)

    p = sub.add_parser(
        "accounts",
        help="list accounts and their token status",
        description="List the connected accounts auth_service holds, optionally checking each token live.",
        epilog_vars=AUTH_VARS,
    )
    p.add_argument("--check", action="store_true", help="also check each token live against TikTok")
    p.add_argument("--json", action="store_true", help="print the accounts as a JSON array")
    p.add_argument("--http-timeout", type=float, default=30.0, help="seconds to wait for auth_service")
    p.set_defaults(run=cmd_accounts)
