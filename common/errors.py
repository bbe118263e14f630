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


DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
"""What a lost or restarting PostgreSQL looks like through asyncpg (the only hand-kept list)."""


def is_retriable(exc: BaseException) -> bool:
    """Whether trying the same thing again later can help: the one rule every retry loop asks.

    A ``PipelineError`` says so itself (``retriable``); asyncpg's and the socket layer's errors
    (``DATABASE_ERRORS``) are a dependency that is away; anything else is a bug or a refusal.
    """
    if isinstance(exc, PipelineError):
        return exc.retriable
    return isinstance(exc, DATABASE_ERRORS)

