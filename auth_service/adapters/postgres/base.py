"""What every part of the auth repository shares: the schema, the vault, the topic prefix."""

from __future__ import annotations

from typing import Any

from auth_service.adapters.vault import Vault
from common.db import Connection


class TxBase:
    """One open transaction (``conn``); the aggregate mixins of ``Tx`` build on it."""

    def __init__(
        self, conn: Connection, schema: str, vault: Vault, topic_prefix: str, correlation_id: str | None
    ):
        self.conn = conn
        self._s = schema
        self._vault = vault
        self._prefix = topic_prefix
        self.correlation_id = correlation_id

    @property
    def vault(self) -> Vault:
        return self._vault


class RepositoryBase:
    """The pool outside any transaction; the read and claim mixins of ``Repository`` build on it."""

    def __init__(self, pool: Any, vault: Vault, schema: str, topic_prefix: str) -> None:
        self._pool = pool
        self._s = schema
        self.vault = vault
        self._prefix = topic_prefix
