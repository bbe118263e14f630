"""Revoking a grant at TikTok on disconnect (#12.16): the tokens it needs, and the ``revoke_pending``
rows a background loop retries."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.adapters.postgres.accounts import ACCOUNT_COLUMNS, account_from_row
from auth_service.adapters.postgres.base import RepositoryBase, TxBase
from auth_service.adapters.vault import ACCESS, REFRESH
from auth_service.domain.account import Account
from auth_service.domain.tokens import NewTokens


@dataclass(frozen=True)
class GrantTokens:
    account_id: str
    token_version: int
    access_token: str
    refresh_token: str
    access_expired: bool
    """By the database's clock."""

    def __repr__(self) -> str:
        return f"GrantTokens({self.account_id!r}, v{self.token_version})"


class RevocationsTx(TxBase):
    async def mark_revoke_pending(
        self, account_id: str, error: str, retry_in_s: float, tokens: NewTokens | None
    ) -> Account | None:
        """Keep the account for a later revoke; store the pair a refresh just gave (TikTok may have
        rotated the refresh token, so the old one no longer works)."""
        sealed = (
            (
                self._vault.seal(tokens.access_token, account_id=account_id, purpose=ACCESS),
                self._vault.seal(tokens.refresh_token, account_id=account_id, purpose=REFRESH),
                float(tokens.expires_in),
            )
            if tokens is not None
            else (None, None, None)
        )
        row = await self.conn.fetchrow(
            f"""
            UPDATE {self._s}.accounts SET
                status = 'revoke_pending', refresh_due_at = NULL, lease_owner = NULL, lease_until = NULL,
                last_error = $2, revoke_attempts = revoke_attempts + 1,
                revoke_next_at = now() + make_interval(secs => $3),
                access_token_ct = coalesce($4, access_token_ct),
                refresh_token_ct = coalesce($5, refresh_token_ct),
                access_expires_at = coalesce(now() + make_interval(secs => $6), access_expires_at),
                updated_at = now()
            WHERE id = $1
            RETURNING {ACCOUNT_COLUMNS}, revoke_attempts
            """,
            account_id,
            error,
            retry_in_s,
            *sealed,
        )
        return account_from_row(row) if row else None

    async def revoke_attempts(self, account_id: str) -> int:
        found = await self.conn.fetchval(
            f"SELECT revoke_attempts FROM {self._s}.accounts WHERE id = $1", account_id
        )
        return int(found or 0)


class RevocationReads(RepositoryBase):
    async def grant_tokens(self, account_id: str) -> GrantTokens | None:
        row = await self._pool.fetchrow(
            f"SELECT id, token_version, access_token_ct, refresh_token_ct,"
            f" access_expires_at <= now() AS access_expired FROM {self._s}.accounts WHERE id = $1",
            account_id,
        )
        if row is None:
            return None
        return GrantTokens(
            account_id=row["id"],
            token_version=int(row["token_version"]),
            access_token=self.vault.open(row["access_token_ct"], account_id=row["id"], purpose=ACCESS),
            refresh_token=self.vault.open(row["refresh_token_ct"], account_id=row["id"], purpose=REFRESH),
            access_expired=bool(row["access_expired"]),
        )

    async def claim_revoke_due(self, limit: int, lease_s: float) -> list[str]:
        """Ids of revoke_pending accounts due for another try; each is pushed ``lease_s`` ahead so
        another replica does not try it at the same moment."""
        rows = await self._pool.fetch(
            f"""
            WITH target AS (
                SELECT id FROM {self._s}.accounts
                WHERE status = 'revoke_pending' AND revoke_next_at <= now()
                ORDER BY revoke_next_at LIMIT $1 FOR UPDATE SKIP LOCKED
            )
            UPDATE {self._s}.accounts a SET revoke_next_at = now() + make_interval(secs => $2)
              FROM target WHERE a.id = target.id
            RETURNING a.id
            """,
            limit,
            lease_s,
        )
        return [r["id"] for r in rows]
