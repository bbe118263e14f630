"""Which database errors are worth a retry, and the repository edge that names an absent database.

A database that is away (refused, lost, overloaded, restarting, a closed pool) is transient; a
statement it refuses (bad data, a violated constraint, a syntax error, a missing table) is not: it
would be refused again on every try, and a loop retrying it would stall on one bad record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import asyncpg.exceptions as pg
import pytest

from auth_service.adapters.postgres import Repository as AuthRepository
from auth_service.adapters.vault import Vault
from common.cipher import KeyRing, TokenCipher, generate_key
from common.db import create_pool, database_edge, unavailable
from common.errors import DatabaseUnavailable, InvalidInput, is_retriable
from common.kafka import KafkaUnavailable
from publish_service.adapters.repository import Repository as PublishRepository
from publish_service.adapters.repository import Topics

CASES: list[tuple[BaseException, bool, bool]] = [
    # (error, is_retriable, is a database that is away -> DatabaseUnavailable at the edge)
    (ConnectionRefusedError(111, "Connection refused"), True, True),
    (ConnectionResetError(104, "Connection reset by peer"), True, True),
    (OSError(113, "No route to host"), True, True),
    (TimeoutError(), True, True),
    (pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), True, True),
    (pg.ConnectionFailureError("connection failure"), True, True),
    (pg.ClientCannotConnectError("cannot connect"), True, True),
    (pg.TooManyConnectionsError("sorry, too many clients already"), True, True),
    (pg.CannotConnectNowError("the database system is starting up"), True, True),
    (pg.AdminShutdownError("terminating connection due to administrator command"), True, True),
    (pg.CrashShutdownError("terminating connection due to crash of another server process"), True, True),
    (asyncpg.InterfaceError("pool is closed"), True, True),
    (asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"), True, True),
    (pg.SerializationError("could not serialize access"), True, False),
    (pg.DeadlockDetectedError("deadlock detected"), True, False),
    (pg.LockNotAvailableError("canceling statement due to lock timeout"), True, False),
    (pg.QueryCanceledError("canceling statement due to statement timeout"), True, False),
    (pg.DataError("invalid input"), False, False),
    (pg.NumericValueOutOfRangeError("bigint out of range"), False, False),
    (pg.InvalidTextRepresentationError("invalid input syntax for type uuid"), False, False),
    (pg.UniqueViolationError("duplicate key value"), False, False),
    (pg.ForeignKeyViolationError("violates foreign key constraint"), False, False),
    (pg.NotNullViolationError("null value in column"), False, False),
    (pg.PostgresSyntaxError("syntax error at or near"), False, False),
    (pg.UndefinedTableError('relation "outbox" does not exist'), False, False),
    (pg.UndefinedColumnError("column does not exist"), False, False),
    (pg.InsufficientPrivilegeError("permission denied"), False, False),
    (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False, False),
    (pg.ClientConfigurationError("invalid connection option: closed"), False, False),
    (DatabaseUnavailable("away"), True, False),
    (KafkaUnavailable("away"), True, False),
    (InvalidInput("bad"), False, False),
    (ValueError("a bug"), False, False),
    (KeyError("a bug"), False, False),
]


@pytest.mark.parametrize(("error", "retriable", "away"), CASES, ids=[repr(c[0])[:60] for c in CASES])
def test_classification(error: BaseException, retriable: bool, away: bool) -> None:
    assert is_retriable(error) is retriable
    translated = unavailable(error)
    assert (translated is not None) is away
    if translated is not None:
        assert isinstance(translated, DatabaseUnavailable) and is_retriable(translated)
        assert type(error).__name__ in translated.message


@database_edge
class _Edge:
    """A repository-shaped class: what its methods raise is what the database would."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def read(self) -> None:
        raise self.error

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        raise self.error
        yield  # pragma: no cover


@pytest.mark.parametrize(("error", "retriable", "away"), CASES, ids=[repr(c[0])[:60] for c in CASES])
async def test_the_edge_translates_only_an_absent_database(
    error: BaseException, retriable: bool, away: bool
) -> None:
    edge = _Edge(error)
    expected: type[BaseException] = DatabaseUnavailable if away else type(error)
    with pytest.raises(expected) as raised:
        await edge.read()
    assert (raised.value.__cause__ is error) is away
    with pytest.raises(expected):
        async with edge.transaction():
            pass


@pytest.mark.stack
async def test_both_repositories_name_a_closed_pool_database_unavailable(database_url: str) -> None:
    pool = await create_pool(database_url)
    await pool.close()
    ring = KeyRing.parse(f"k1:{generate_key()}")
    repos = [
        AuthRepository(pool, Vault(TokenCipher(ring), TokenCipher(ring))),
        PublishRepository(pool, "publish", Topics(status="s", dlq="d", refresh="r"), rate_window_s=60.0),
    ]
    for repo in repos:
        with pytest.raises(DatabaseUnavailable, match="pool is closed"):
            await repo.ping()
        with pytest.raises(DatabaseUnavailable):
            async with repo.transaction():
                pass
