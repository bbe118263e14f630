"""One exception tree for the project, with behaviour on the classes.

Every error has a stable ``code`` (what dashboards and status events show), says whether trying again
later can help (``retriable``) and how it reads at an HTTP edge (``http_status``). Middlewares and
consumer wrappers act on those attributes instead of on exception types.
"""

from __future__ import annotations

from typing import ClassVar

import asyncpg


class PipelineError(Exception):
    code: ClassVar[str] = "internal_error"
    retriable: ClassVar[bool] = False
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]  # instance override of the class default

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retriable}


class ConfigError(PipelineError):
    """A setting is missing or malformed; the process cannot start."""

    code = "config_error"


class InvalidInput(PipelineError):
    """The caller sent something we will never accept as it is."""

    code = "invalid_input"
    http_status = 400


class Unauthorized(PipelineError):
    code = "unauthorized"
    http_status = 401


class NotFound(PipelineError):
    code = "not_found"
    http_status = 404


class Conflict(PipelineError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = 413


class TransientError(PipelineError):
    """A dependency is unavailable for now; the same call may succeed later.

    The one notion of "dependency unavailable": ``KafkaUnavailable``, ``S3Unavailable`` and
    ``DatabaseUnavailable`` are its subclasses. Code that retries asks :func:`is_retriable`.
    """

    code = "temporarily_unavailable"
    retriable = True
    http_status = 503


class DatabaseUnavailable(TransientError):
    """PostgreSQL could not be reached, broke the connection or refused the statement for now."""

    code = "database_unavailable"


DATABASE_AWAY: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or command timeout
    asyncpg.PostgresConnectionError,  # class 08: connection lost, cannot connect, rejected
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, out of memory/disk
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.exceptions.AdminShutdownError,  # 57P01
    asyncpg.exceptions.CrashShutdownError,  # 57P02
)
"""What a lost, restarting or overloaded PostgreSQL looks like through asyncpg (the one hand-kept list)."""

DATABASE_TRY_AGAIN: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.exceptions.QueryCanceledError,  # 57014: statement_timeout, a cancelled backend
)
"""A refusal of this attempt only: the same statement may pass on the next try."""


def database_away(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable for now (not that it refused a statement)."""
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return False
    if isinstance(exc, asyncpg.InterfaceError):
        # A pool or connection closed under us (a restart, a shutdown); other interface errors are bugs.
        text = str(exc)
        return "closed" in text or "closing" in text
    return isinstance(exc, DATABASE_AWAY)


def is_retriable(exc: BaseException) -> bool:
    """Whether trying the same thing again later can help: the one rule every retry loop asks.

    A ``PipelineError`` says so itself (``retriable``); a database that is away (``database_away``)
    or a transaction it rolled back for now (``DATABASE_TRY_AGAIN``) can pass later. Anything else is a
    bug or a refusal that comes again on every try: a ``DataError``, an integrity violation, a syntax
    error or a missing table is not retried (a loop that retried it would stall on one bad record).
    """
    if isinstance(exc, PipelineError):
        return exc.retriable
    return database_away(exc) or isinstance(exc, DATABASE_TRY_AGAIN)
