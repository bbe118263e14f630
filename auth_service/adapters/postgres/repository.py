"""The auth repository: ``Repository.transaction()`` opens the unit of work, a ``Tx``.

Handlers open a unit of work with ``Repository.transaction(correlation_id)`` and call ``Tx``
methods; account rows, OAuth states and the events emitted there (through the outbox) commit or roll
back together. Reads and lease changes that are one statement each are ``Repository`` methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from auth_service.adapters.postgres.accounts import AccountReads, AccountsTx
from auth_service.adapters.postgres.claims import Claims
from auth_service.adapters.postgres.events import EventsTx
from auth_service.adapters.postgres.oauth_states import StateHousekeeping, StatesTx
from auth_service.adapters.postgres.revocations import RevocationReads, RevocationsTx
from auth_service.adapters.vault import Vault
from common.db import database_edge, validate_identifier


@database_edge
class Tx(AccountsTx, StatesTx, EventsTx, RevocationsTx):
    """One open transaction: account rows, OAuth states and outbox events change together."""


@database_edge
class Repository(AccountReads, Claims, StateHousekeeping, RevocationReads):
    def __init__(self, pool: Any, vault: Vault, *, schema: str = "auth", topic_prefix: str = "") -> None:
        super().__init__(pool, vault, validate_identifier(schema), topic_prefix)

    @property
    def schema(self) -> str:
        return self._s

    @property
    def pool(self) -> Any:
        return self._pool

    @asynccontextmanager
    async def transaction(self, correlation_id: str | None = None) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield Tx(conn, self._s, self.vault, self._prefix, correlation_id)
