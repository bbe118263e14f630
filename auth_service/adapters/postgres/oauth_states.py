"""OAuth states: one row per authorisation started, used once, with the sealed PKCE verifier."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.adapters.postgres.base import RepositoryBase, TxBase
from auth_service.adapters.vault import PKCE, pkce_binding
from auth_service.domain.oauth_state import StateRecord


@dataclass(frozen=True)
class SealedVerifier:
    """A state's PKCE code verifier as stored (for key rotation)."""

    state_hash: bytes
    code_verifier_ct: str


class StatesTx(TxBase):
    async def save_state(
        self, state_hash: bytes, browser_hash: bytes, code_verifier: str | None, ttl_s: float
    ) -> None:
        sealed = (
            self._vault.seal(code_verifier, account_id=pkce_binding(state_hash), purpose=PKCE)
            if code_verifier is not None
            else None
        )
        await self.conn.execute(
            f"INSERT INTO {self._s}.oauth_states (state_hash, browser_hash, code_verifier_ct, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            state_hash,
            browser_hash,
            sealed,
            ttl_s,
        )

    async def live_states(self, ttl_s: float, at_most: int) -> int:
        """Unused states issued in the last ``ttl_s`` (the count stops at ``at_most``)."""
        count: int = await self.conn.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM {self._s}.oauth_states"
            " WHERE created_at > now() - make_interval(secs => $1) AND consumed_at IS NULL LIMIT $2) live",
            ttl_s,
            at_most,
        )
        return count

    async def consume_state(self, state_hash: bytes) -> StateRecord | None:
        """Mark the state used (whatever happens next) and return it as it was before."""
        row = await self.conn.fetchrow(
            f"SELECT state_hash, browser_hash, code_verifier_ct, created_at, expires_at, consumed_at"
            f" FROM {self._s}.oauth_states WHERE state_hash = $1 FOR UPDATE",
            state_hash,
        )
        if row is None:
            return None
        if row["consumed_at"] is None:
            await self.conn.execute(
                f"UPDATE {self._s}.oauth_states SET consumed_at = now() WHERE state_hash = $1", state_hash
            )
        return StateRecord(
            state_hash=bytes(row["state_hash"]),
            browser_hash=bytes(row["browser_hash"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            consumed_before=row["consumed_at"] is not None,
            code_verifier_ct=row["code_verifier_ct"],
        )

    def open_code_verifier(self, record: StateRecord) -> str | None:
        if record.code_verifier_ct is None:
            return None
        return self._vault.open(
            record.code_verifier_ct, account_id=pkce_binding(record.state_hash), purpose=PKCE
        )

    async def lock_sealed_verifiers(self) -> list[SealedVerifier]:
        rows = await self.conn.fetch(
            f"SELECT state_hash, code_verifier_ct FROM {self._s}.oauth_states"
            " WHERE code_verifier_ct IS NOT NULL FOR UPDATE"
        )
        return [SealedVerifier(bytes(r["state_hash"]), r["code_verifier_ct"]) for r in rows]

    async def store_verifier(self, state_hash: bytes, code_verifier_ct: str) -> None:
        await self.conn.execute(
            f"UPDATE {self._s}.oauth_states SET code_verifier_ct = $2 WHERE state_hash = $1",
            state_hash,
            code_verifier_ct,
        )


class StateHousekeeping(RepositoryBase):
    async def delete_old_states(self, older_than_s: float) -> int:
        result: str = await self._pool.execute(
            f"DELETE FROM {self._s}.oauth_states WHERE created_at < now() - make_interval(secs => $1)",
            older_than_s,
        )
        return int(result.split()[-1])
