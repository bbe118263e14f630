"""Accounts with their sealed tokens: reading, locking and writing rows.

Times that decide who may act (due times, expiry) come from the database's clock, so that replicas
with skewed clocks still agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from auth_service.adapters.postgres.base import RepositoryBase, TxBase
from auth_service.adapters.vault import ACCESS, REFRESH
from auth_service.domain.account import Account
from auth_service.domain.tokens import Claim, NewTokens, Profile
from common.events import AccountStatus

ACCOUNT_COLUMNS = """
    id, client_key, open_id, status, scopes, display_name, union_id, avatar_url, token_version,
    access_expires_at, refresh_expires_at, refresh_due_at, last_refreshed_at, refresh_failures,
    last_error, created_at, updated_at
"""


def _seconds(value: int | None) -> float | None:
    """A lifetime TikTok gave, or None when it did not say (stored as an unknown expiry)."""
    return None if value is None else float(value)


def account_from_row(row: Any) -> Account:
    return Account(
        id=row["id"],
        client_key=row["client_key"],
        open_id=row["open_id"],
        status=AccountStatus(row["status"]),
        scopes=tuple(row["scopes"] or ()),
        display_name=row["display_name"],
        union_id=row["union_id"],
        avatar_url=row["avatar_url"],
        token_version=int(row["token_version"]),
        access_expires_at=row["access_expires_at"],
        refresh_expires_at=row["refresh_expires_at"],
        refresh_due_at=row["refresh_due_at"],
        last_refreshed_at=row["last_refreshed_at"],
        refresh_failures=int(row["refresh_failures"]),
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True)
class SealedAccount:
    """An account row with its ciphertexts as stored (for key rotation)."""

    account: Account
    access_token_ct: str
    refresh_token_ct: str
    transport_key_id: str | None


class AccountsTx(TxBase):
    """Account rows inside the unit of work."""

    async def now(self) -> datetime:
        value: datetime = await self.conn.fetchval("SELECT now()")
        return value

    async def lock_by_open_id(self, client_key: str, open_id: str) -> Account | None:
        row = await self.conn.fetchrow(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self._s}.accounts"
            " WHERE client_key = $1 AND open_id = $2 FOR UPDATE",
            client_key,
            open_id,
        )
        return account_from_row(row) if row else None

    async def lock(self, account_id: str) -> Account | None:
        row = await self.conn.fetchrow(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self._s}.accounts WHERE id = $1 FOR UPDATE", account_id
        )
        return account_from_row(row) if row else None

    async def insert_connected(
        self, account_id: str, client_key: str, open_id: str, tokens: NewTokens, profile: Profile
    ) -> Account | None:
        """Insert a new account; None when another callback inserted the same TikTok user first."""
        row = await self.conn.fetchrow(
            f"""
            INSERT INTO {self._s}.accounts (
                id, client_key, open_id, status, scopes, display_name, union_id, avatar_url,
                access_token_ct, refresh_token_ct, token_version, access_expires_at, refresh_expires_at,
                refresh_due_at, transport_key_id)
            VALUES ($1, $2, $3, 'connected', $4, $5, $6, $7, $8, $9, 1,
                    now() + make_interval(secs => $10), now() + make_interval(secs => $11),
                    now() + make_interval(secs => $12), $13)
            ON CONFLICT (client_key, open_id) DO NOTHING
            RETURNING {ACCOUNT_COLUMNS}
            """,
            account_id,
            client_key,
            open_id,
            list(tokens.scopes),
            profile.display_name,
            profile.union_id,
            profile.avatar_url,
            self._vault.seal(tokens.access_token, account_id=account_id, purpose=ACCESS),
            self._vault.seal(tokens.refresh_token, account_id=account_id, purpose=REFRESH),
            float(tokens.expires_in),
            _seconds(tokens.refresh_expires_in),
            tokens.refresh_in,
            self._vault.transport.active_id,
        )
        return account_from_row(row) if row else None

    async def reconnect(self, account_id: str, tokens: NewTokens, profile: Profile) -> Account:
        """New tokens for a known TikTok user (the row must be locked): connected, version + 1."""
        row = await self.conn.fetchrow(
            f"""
            UPDATE {self._s}.accounts SET
                status = 'connected', scopes = $2,
                display_name = coalesce($3, display_name), union_id = coalesce($4, union_id),
                avatar_url = coalesce($5, avatar_url),
                access_token_ct = $6, refresh_token_ct = $7, token_version = token_version + 1,
                access_expires_at = now() + make_interval(secs => $8),
                refresh_expires_at = now() + make_interval(secs => $9),
                refresh_due_at = now() + make_interval(secs => $10),
                lease_owner = NULL, lease_until = NULL, refresh_failures = 0, last_error = NULL,
                transport_key_id = $11, updated_at = now()
            WHERE id = $1
            RETURNING {ACCOUNT_COLUMNS}
            """,
            account_id,
            list(tokens.scopes),
            profile.display_name,
            profile.union_id,
            profile.avatar_url,
            self._vault.seal(tokens.access_token, account_id=account_id, purpose=ACCESS),
            self._vault.seal(tokens.refresh_token, account_id=account_id, purpose=REFRESH),
            float(tokens.expires_in),
            _seconds(tokens.refresh_expires_in),
            tokens.refresh_in,
            self._vault.transport.active_id,
        )
        return account_from_row(row)

    async def store_refresh(self, claim: Claim, tokens: NewTokens) -> Account | None:
        """Record a refresh and its newest refresh token; None when the claim's version is stale.

        Conditioned on the version that was claimed, not on the lease: tokens TikTok has just issued
        are the only valid ones, so they are kept even if the lease ran out, unless someone else has
        stored a newer pair meanwhile.
        """
        row = await self.conn.fetchrow(
            f"""
            UPDATE {self._s}.accounts SET
                scopes = $3, access_token_ct = $4, refresh_token_ct = $5,
                token_version = token_version + 1,
                access_expires_at = now() + make_interval(secs => $6),
                refresh_expires_at = coalesce(now() + make_interval(secs => $7), refresh_expires_at),
                refresh_due_at = now() + make_interval(secs => $8),
                lease_owner = NULL, lease_until = NULL, refresh_failures = 0, last_error = NULL,
                last_refreshed_at = now(), transport_key_id = $9, updated_at = now()
            WHERE id = $1 AND token_version = $2 AND status = 'connected'
            RETURNING {ACCOUNT_COLUMNS}
            """,
            claim.account_id,
            claim.token_version,
            list(tokens.scopes),
            self._vault.seal(tokens.access_token, account_id=claim.account_id, purpose=ACCESS),
            self._vault.seal(tokens.refresh_token, account_id=claim.account_id, purpose=REFRESH),
            float(tokens.expires_in),
            _seconds(tokens.refresh_expires_in),
            tokens.refresh_in,
            self._vault.transport.active_id,
        )
        return account_from_row(row) if row else None

    async def require_reauth(self, claim: Claim, reason: str) -> Account | None:
        """Stop refreshing: the user must connect again. None when the claim's version is stale."""
        row = await self.conn.fetchrow(
            f"""
            UPDATE {self._s}.accounts SET
                status = 'reauth_required', refresh_due_at = NULL, lease_owner = NULL,
                lease_until = NULL, last_error = $3, updated_at = now()
            WHERE id = $1 AND token_version = $2 AND status = 'connected'
            RETURNING {ACCOUNT_COLUMNS}
            """,
            claim.account_id,
            claim.token_version,
            reason,
        )
        return account_from_row(row) if row else None

    async def delete(self, account_id: str) -> None:
        await self.conn.execute(f"DELETE FROM {self._s}.accounts WHERE id = $1", account_id)

    async def access_token(self, account_id: str) -> str:
        ct: str = await self.conn.fetchval(
            f"SELECT access_token_ct FROM {self._s}.accounts WHERE id = $1", account_id
        )
        return self._vault.open(ct, account_id=account_id, purpose=ACCESS)

    async def lock_sealed(self, after: str, limit: int) -> list[SealedAccount]:
        """The next ``limit`` accounts after ``after`` (by id) with their ciphertexts, locked."""
        rows = await self.conn.fetch(
            f"SELECT {ACCOUNT_COLUMNS}, access_token_ct, refresh_token_ct, transport_key_id"
            f" FROM {self._s}.accounts WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE",
            after,
            limit,
        )
        return [
            SealedAccount(
                account_from_row(r), r["access_token_ct"], r["refresh_token_ct"], r["transport_key_id"]
            )
            for r in rows
        ]

    async def store_ciphertexts(
        self, account_id: str, access_token_ct: str, refresh_token_ct: str, transport_key_id: str
    ) -> None:
        await self.conn.execute(
            f"UPDATE {self._s}.accounts SET access_token_ct = $2, refresh_token_ct = $3,"
            " transport_key_id = $4 WHERE id = $1",
            account_id,
            access_token_ct,
            refresh_token_ct,
            transport_key_id,
        )


class AccountReads(RepositoryBase):
    """Account rows outside a transaction (one statement each)."""

    async def get(self, account_id: str) -> Account | None:
        row = await self._pool.fetchrow(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self._s}.accounts WHERE id = $1", account_id
        )
        return account_from_row(row) if row else None

    async def list_accounts(self, *, status: str | None, after: str | None, limit: int) -> list[Account]:
        rows = await self._pool.fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self._s}.accounts"
            " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR id > $2)"
            " ORDER BY id LIMIT $3",
            status,
            after,
            limit,
        )
        return [account_from_row(r) for r in rows]

    async def access_token(self, account_id: str) -> str | None:
        ct = await self._pool.fetchval(
            f"SELECT access_token_ct FROM {self._s}.accounts WHERE id = $1", account_id
        )
        if ct is None:
            return None
        return self.vault.open(ct, account_id=account_id, purpose=ACCESS)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

