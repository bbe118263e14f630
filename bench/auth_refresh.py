# ruff: noqa: T201, S603  (a command-line benchmark: it prints its table and runs our own processes)
"""Refresh throughput of auth_service: N due accounts, 1 replica vs 3.

    python bench/auth_refresh.py [--accounts 10000] [--replicas 1,3] [--concurrency 50]

Real pieces only: PostgreSQL and Kafka from the local stack (the environment, else ``.stack/env``,
else ``scripts/stack/stack.sh up``), the TikTok sandbox as its own process (rotation ``always``),
and each replica as its own ``python -m auth_service`` process. The accounts are created at the
sandbox through its control API and inserted through the service's repository, not yet due. Each
scenario then makes every account due at once and measures until every account's token_version has
moved on. The same accounts serve both scenarios (their newest refresh tokens are in the database).

accounts/s is wall-clock throughput; p50/p95 per refresh come from the replicas' own
``tiktok_token_refresh_duration_seconds`` histograms (the TikTok call plus the commit), interpolated within
buckets as Prometheus' histogram_quantile does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from auth_service.adapters.postgres import Repository  # noqa: E402
from auth_service.adapters.vault import Vault  # noqa: E402
from auth_service.app import MIGRATIONS  # noqa: E402
from common.cipher import KeyRing, TokenCipher, generate_key  # noqa: E402
from common.db import apply_migrations  # noqa: E402
from tests.auth.seeding import SeedAccount  # noqa: E402
from tests.auth.seeding import seed as insert_accounts  # noqa: E402
from tiktok_pipeline.local import free_port  # noqa: E402

SCOPES = ("user.info.basic", "video.publish")


def stack_env() -> dict[str, str]:
    wanted = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    if all(os.environ.get(k) for k in wanted):
        return {k: os.environ[k] for k in wanted}
    env_file = ROOT / ".stack" / "env"
    if not env_file.exists():
        subprocess.run([str(ROOT / "scripts" / "stack" / "stack.sh"), "up"], check=True, cwd=ROOT)
    env: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            env[name.strip()] = value.strip().strip("'\"")
    return {k: env[k] for k in wanted}


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def process(
    args: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_http(http: aiohttp.ClientSession, url: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            async with http.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {limit_s}s")
        await asyncio.sleep(0.2)


async def seed(http: aiohttp.ClientSession, sandbox: str, repo: Repository, count: int) -> str:
    async with http.post(f"{sandbox}/_sandbox/apps", json={"redirect_uris": ["http://127.0.0.1:1/cb"]}) as r:
        app = await r.json()
    client_key = app["client_key"]
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> SeedAccount:
        async with gate:
            username = f"bench{i}"
            async with http.post(f"{sandbox}/_sandbox/creators", json={"username": username}) as r:
                r.raise_for_status()
            body = {"client_key": client_key, "creator": username, "scopes": list(SCOPES)}
            async with http.post(f"{sandbox}/_sandbox/tokens", json=body) as r:
                grant = await r.json()
        return SeedAccount(
            account_id=f"acc_bench{i:06d}",
            client_key=client_key,
            open_id=grant["open_id"],
            access_token=grant["access_token"],
            refresh_token=grant["refresh_token"],
            scopes=SCOPES,
            access_expires_in=float(grant["expires_in"]),
            refresh_expires_in=float(grant["refresh_expires_in"]),
            refresh_due_in=86_400.0,
        )

    for start in range(0, count, 1000):
        batch = await asyncio.gather(*(one(i) for i in range(start, min(count, start + 1000))))
        await insert_accounts(repo, batch)
    return client_key


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """histogram_quantile over cumulative (upper bound, count) pairs."""
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_bound, prev_count = bound, count
    return prev_bound


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[float, float]:
    async with http.get(url) as r:
        text = await r.text()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("tiktok_token_refresh_duration_seconds_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


async def scenario(
    replicas: int,
    accounts: int,
    target: int,
    base_env: dict[str, str],
    database_url: str,
    logs: Path,
    profile: bool = False,
) -> dict[str, Any]:
    ports = [free_port() for _ in range(replicas)]
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession(trust_env=False) as http:
        for i, port in enumerate(ports):
            env = {**base_env, "HTTP_PORT": str(port), "INSTANCE_ID": f"bench-{replicas}-{i}"}
            command = [sys.executable, "-m", "auth_service"]
            if profile:
                command[1:1] = ["-m", "cProfile", "-o", str(logs / f"auth-{replicas}-{i}.prof")]
            await stack.enter_async_context(process(command, env, logs / f"auth-{replicas}-{i}.log"))
        for port in ports:
            await wait_http(http, f"http://127.0.0.1:{port}/readyz")
        conn = await asyncpg.connect(database_url)
        try:
            started = time.monotonic()
            await conn.execute("UPDATE auth.accounts SET refresh_due_at = now()")
            while True:
                done = await conn.fetchval(
                    "SELECT count(*) FROM auth.accounts WHERE token_version >= $1", target
                )
                if done >= accounts:
                    break
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            bad = await conn.fetchval("SELECT count(*) FROM auth.accounts WHERE status <> 'connected'")
            over = await conn.fetchval("SELECT count(*) FROM auth.accounts WHERE token_version > $1", target)
        finally:
            await conn.close()
        merged: dict[float, float] = {}
        for port in ports:
            for bound, count in (await scrape(http, f"http://127.0.0.1:{port}/metrics")).items():
                merged[bound] = merged.get(bound, 0.0) + count
    buckets = sorted(merged.items())
    return {
        "replicas": replicas,
        "seconds": elapsed,
        "rate": accounts / elapsed,
        "p50": quantile(0.5, buckets),
        "p95": quantile(0.95, buckets),
        "reauth": bad,
        "double": over,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--replicas", default="1,3")
    parser.add_argument("--concurrency", type=int, default=50, help="refreshes in flight per replica")
    parser.add_argument("--pool", type=int, default=20, help="database connections per replica")
    parser.add_argument("--profile", action="store_true", help="cProfile each replica into .stack/bench/")
    args = parser.parse_args()

    stack = stack_env()
    logs = ROOT / ".stack" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    token_keys, transport_keys = f"k1:{generate_key()}", f"t1:{generate_key()}"
    sandbox_port = free_port()
    sandbox_env = {
        **os.environ,
        "TIKTOK_SANDBOX_REFRESH_ROTATION": "always",
        "TIKTOK_SANDBOX_ALLOW_HTTP_WEB_REDIRECTS": "true",
    }
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    async with (
        fresh_database(stack["DATABASE_URL"]) as database_url,
        process(
            [sys.executable, "-m", "tiktok_sandbox", "--port", str(sandbox_port)],
            sandbox_env,
            logs / "sandbox.log",
        ),
        aiohttp.ClientSession(trust_env=False) as http,
    ):
        await wait_http(http, f"{sandbox}/_sandbox/health")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        try:
            await apply_migrations(pool, "auth", MIGRATIONS)
            vault = Vault(TokenCipher(KeyRing.parse(token_keys)), TokenCipher(KeyRing.parse(transport_keys)))
            t = time.monotonic()
            client_key = await seed(
                http, sandbox, Repository(pool, vault, topic_prefix=prefix), args.accounts
            )
            print(f"seeded {args.accounts} accounts in {time.monotonic() - t:.1f}s", file=sys.stderr)
        finally:
            await pool.close()
        async with http.get(f"{sandbox}/_sandbox/apps/{client_key}") as r:
            client_secret = (await r.json())["client_secret"]
        base_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
            "TOPIC_PREFIX": prefix,
            "TIKTOK_API_BASE": sandbox,
            "TIKTOK_AUTHORIZE_URL": f"{sandbox}/v2/auth/authorize/",
            "TIKTOK_CLIENT_KEY": client_key,
            "TIKTOK_CLIENT_SECRET": client_secret,
            "OAUTH_REDIRECT_URI": "http://127.0.0.1:1/cb",
            "CONNECT_SUCCESS_URL": "http://127.0.0.1:1/done",
            "TOKEN_KEYS": token_keys,
            "TRANSPORT_KEYS": transport_keys,
            "API_KEY": "bench-api-key-0123456789",
            "LOG_LEVEL": "WARNING",
            "AUTH_REFRESH_POLL_INTERVAL_S": "0.2",
            "AUTH_REFRESH_CONCURRENCY": str(args.concurrency),
            "AUTH_DB_POOL_MAX": str(args.pool),
        }
        results = []
        target = 1
        for n in (int(x) for x in args.replicas.split(",")):
            target += 1
            results.append(
                await scenario(n, args.accounts, target, base_env, database_url, logs, args.profile)
            )
        await _delete_topics(stack["KAFKA_BOOTSTRAP_SERVERS"], prefix)

    print(f"\nauth_service refresh benchmark: {args.accounts} due accounts, sandbox rotation=always,")
    print(f"{args.concurrency} refreshes in flight per replica, {args.pool} DB connections per replica;")
    print(f"sandbox, replicas, PostgreSQL and Kafka share this host's {os.cpu_count()} CPUs\n")
    print(f"{'replicas':>8} | {'seconds':>8} | {'accounts/s':>10} | {'p50 ms':>7} | {'p95 ms':>7} | problems")
    print(f"{'-' * 8}-+-{'-' * 8}-+-{'-' * 10}-+-{'-' * 7}-+-{'-' * 7}-+---------")
    for r in results:
        problems = f"{r['reauth']} reauth, {r['double']} double" if r["reauth"] or r["double"] else "none"
        print(
            f"{r['replicas']:>8} | {r['seconds']:>8.2f} | {r['rate']:>10.0f} | "
            f"{r['p50'] * 1000:>7.1f} | {r['p95'] * 1000:>7.1f} | {problems}"
        )


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    from common.kafka.clients import new_admin

    admin = new_admin(bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
