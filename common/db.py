"""PostgreSQL: the asyncpg pool and the numbered-SQL migrations runner.

Each service owns one schema and keeps its migrations as ``<service>/migrations/NNNN_name.sql``.
``apply_migrations`` applies the pending ones in order, each file in its own transaction, and records
them in ``<schema>.schema_migrations``. A session-level advisory lock (keyed by the schema) makes
replicas that start together take turns: the first applies, the others find nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from common.errors import PipelineError

log = structlog.get_logger(__name__)

# asyncpg ships no type information; these aliases say what is meant where the type is ``Any``.
Pool = asyncpg.Pool
Connection = asyncpg.Connection

REFUSED_VALUE: tuple[type[Exception], ...] = (
    asyncpg.DataError,  # PostgreSQL refused a value (SQLSTATE class 22: out of range, bad text)
    asyncpg.exceptions._base.DataError,  # asyncpg could not encode an argument (an int over 64 bits)
)
"""A value the database will refuse every time: never transient, whatever else the error is."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MIGRATION_FILE = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")


class MigrationError(PipelineError):
    """The migrations can't be applied as they are; the service must not start."""

    code = "migration_error"


class MigrationChecksumMismatch(MigrationError):
    """A file that was already applied has changed since: fix the file, never edit history."""

    code = "migration_checksum_mismatch"


def validate_identifier(name: str) -> str:
    """Return ``name`` if it is a plain lower-case SQL identifier, else raise ``ValueError``.

    Schema names are interpolated into SQL (identifiers can't be bound as parameters), so only
    ``[a-z_][a-z0-9_]*`` of at most 63 characters is accepted.
    """
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a valid SQL identifier: {name!r} (expected [a-z_][a-z0-9_]*, max 63)")
    return name


def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = 30.0,
    max_inactive_connection_lifetime: float = 300.0,
    server_settings: Mapping[str, str] | None = None,
    init: Callable[[Any], Awaitable[None]] | None = None,
) -> Any:
    """Create an asyncpg pool; ``await`` it, or use it as ``async with create_pool(...) as pool``.

    The pool replaces connections that broke (e.g. after a PostgreSQL restart) on the next acquire.
    ``application_name`` defaults to ``tiktok-pipeline`` so sessions are recognisable in
    ``pg_stat_activity``.
    """
    settings = {"application_name": "tiktok-pipeline", **(server_settings or {})}
    return asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        max_inactive_connection_lifetime=max_inactive_connection_lifetime,
        server_settings=settings,
        init=init,
    )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def load_migrations(directory: Path) -> list[Migration]:
    """Read ``NNNN_name.sql`` files from ``directory``, ordered by version.

    Any other ``*.sql`` file, or two files with one version, is an error rather than something
    silently skipped.
    """
    if not directory.is_dir():
        raise MigrationError(f"migrations directory does not exist: {directory}")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"migration file name must look like 0001_create_posts.sql: {path.name}")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(
                f"two migrations with version {version:04d}: {migrations[version].filename}, {path.name}"
            )
        raw = path.read_bytes()
        migrations[version] = Migration(
            version=version,
            name=match["name"],
            sql=raw.decode("utf-8"),
            checksum=hashlib.sha256(raw).hexdigest(),
        )
    return [migrations[v] for v in sorted(migrations)]


def advisory_lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` naming one purpose in one schema."""
    digest = hashlib.sha256(f"tiktok-pipeline:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def apply_migrations(
    pool_or_conn: Any,
    schema: str,
    directory: Path,
    *,
    lock_timeout: float = 300.0,
) -> list[str]:
    """Apply the pending migrations in ``directory`` to ``schema``; return the file names applied.

    Creates the schema and ``<schema>.schema_migrations`` if missing. Each file runs in its own
    transaction with ``search_path`` set to the schema, so files may use unqualified names (and
    therefore must not use statements that refuse a transaction, like ``CREATE INDEX
    CONCURRENTLY``). Raises ``MigrationChecksumMismatch`` before applying anything if an applied file
    has changed. Waits at most ``lock_timeout`` seconds for another replica that is migrating.
    """
    validate_identifier(schema)
    migrations = load_migrations(directory)
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            return await _apply_on(conn, schema, migrations, lock_timeout)
    return await _apply_on(pool_or_conn, schema, migrations, lock_timeout)


async def _apply_on(conn: Any, schema: str, migrations: list[Migration], lock_timeout: float) -> list[str]:
    key = advisory_lock_key("migrations", schema)
    await conn.execute("SELECT pg_advisory_lock($1::bigint)", key, timeout=lock_timeout)
    try:
        return await _apply_locked(conn, schema, migrations)
    finally:
        # A broken connection has already dropped the session's lock with it.
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1::bigint)", key)


async def _apply_locked(conn: Any, schema: str, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        f"""
        CREATE SCHEMA IF NOT EXISTS {schema};
        CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    rows = await conn.fetch(f"SELECT version, name, checksum FROM {schema}.schema_migrations")
    applied = {int(r["version"]): (str(r["name"]), str(r["checksum"])) for r in rows}
    known = {m.version for m in migrations}

    for m in migrations:
        if m.version in applied and applied[m.version][1] != m.checksum:
            raise MigrationChecksumMismatch(
                f"migration {m.filename} in schema {schema!r} was changed after it was applied "
                f"(recorded sha256 {applied[m.version][1][:12]}…, file now {m.checksum[:12]}…); "
                "add a new migration instead of editing an applied one"
            )
    for version in sorted(set(applied) - known):
        # A newer release may have applied it; an older replica must still be able to start.
        log.warning("migration_applied_but_unknown", schema=schema, version=version, name=applied[version][0])

    done: list[str] = []
    for m in migrations:
        if m.version in applied:
            continue
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {schema}, public")
            await conn.execute(m.sql)
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
        log.info("migration_applied", schema=schema, version=m.version, name=m.name)
        done.append(m.filename)
    return done


async def migrate(dsn: str, schema: str, directory: Path) -> list[str]:
    """Apply the pending migrations of ``directory`` to ``schema`` with a short-lived pool."""
    async with create_pool(dsn, min_size=1, max_size=2) as pool:
        return await apply_migrations(pool, schema, directory)
