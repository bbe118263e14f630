"""PostgreSQL: the asyncpg pool and the numbered-SQL migrations runner.

Each service owns one schema and keeps its migrations as ``<service>/migrations/NNNN_name.sql``.
``apply_migrations`` applies the pending ones in order, each file in its own transaction, and records
them in ``<schema>.schema_migrations``. A session-level advisory lock (keyed by the schema) makes
replicas that start together take turns: the first applies, the others find nothing left to do.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
import structlog

from common.errors import DatabaseUnavailable, PipelineError, database_away

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


C = TypeVar("C", bound=type)


def unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The ``DatabaseUnavailable`` a connection-level error means (refused, lost, too many connections,
    a closed pool, cannot connect now), or None: a refused statement stays what it is."""
    if isinstance(exc, PipelineError) or not database_away(exc):
        return None
    return DatabaseUnavailable(f"PostgreSQL is unavailable: {type(exc).__name__}: {exc}"[:300])


def database_edge(cls: C) -> C:
    """Class decorator for a repository (or its unit of work): every coroutine method, and every
    method returning an async context manager (``transaction()``, ``savepoint()``), raises
    ``DatabaseUnavailable`` (chained to asyncpg's error) where the database is away, so the layers
    above see one transient error and never an asyncpg type."""
    for name in dir(cls):
        if name.startswith("__"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, property | staticmethod | classmethod) or not callable(attr):
            continue
        if inspect.iscoroutinefunction(attr):
            setattr(cls, name, _translating(attr))
        elif inspect.isasyncgenfunction(getattr(attr, "__wrapped__", None)):
            setattr(cls, name, _translating_context(attr))
    return cls


def _translating(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            if (translated := unavailable(exc)) is not None:
                raise translated from exc
            raise

    return call


def _translating_context(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> _Edge:
        return _Edge(method(*args, **kwargs))

    return call


class _Edge:
    """An async context manager whose entry and exit (acquire, commit) translate like the methods."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def __aenter__(self) -> Any:
        try:
            return await self._inner.__aenter__()
        except Exception as exc:
            if (translated := unavailable(exc)) is not None:
                raise translated from exc
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        except Exception as error:
            if error is not exc and (translated := unavailable(error)) is not None:
                raise translated from error
            raise
        return result


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
        reset=_reset_on_release,
    )


# Server process ids of pooled connections taken with session_connection (session state to reset).
_SESSION_STATE: set[int] = set()


@asynccontextmanager
async def session_connection(pool: Any) -> AsyncIterator[Any]:
    """A pooled connection that will hold session state (``LISTEN``, a session-level advisory lock):
    on release it gets PostgreSQL's full reset (``UNLISTEN *``, advisory locks released, settings
    reset), whatever way the block was left.

    Every other release gets only asyncpg's own part of the reset (an open transaction rolled back,
    listeners dropped), not the reset query: a round trip per release saved, and the pipeline's
    queries keep no session state (``SET LOCAL`` and transaction-level advisory locks end with the
    transaction)."""
    async with pool.acquire() as conn:
        _SESSION_STATE.add(conn.get_server_pid())
        yield conn


async def _reset_on_release(conn: Any) -> None:
    """The pool's reset (after asyncpg's own): the server-side reset for connections that took
    session state only. A connection whose reset fails is closed by the pool."""
    pid = conn.get_server_pid()
    if pid in _SESSION_STATE:
        _SESSION_STATE.discard(pid)
        await conn.execute(conn.get_reset_query())


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
        async with session_connection(pool_or_conn) as conn:
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
