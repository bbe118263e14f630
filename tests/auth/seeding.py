"""Inserting accounts directly (tests and the refresh benchmark), as if they had been connected before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from auth_service.adapters.postgres import Repository
from auth_service.adapters.vault import ACCESS, REFRESH


@dataclass(frozen=True)
class SeedAccount:
    account_id: str
    client_key: str
    open_id: str
    access_token: str
    refresh_token: str
    scopes: tuple[str, ...]
    access_expires_in: float
    refresh_expires_in: float
    refresh_due_in: float
    token_version: int = 1


async def seed(repo: Repository, accounts: Sequence[SeedAccount]) -> None:
    """Insert ``accounts``, their tokens sealed exactly as a connect would."""
    vault = repo.vault
    records = [
        (
            a.account_id,
            a.client_key,
            a.open_id,
            "connected",
            list(a.scopes),
            vault.seal(a.access_token, account_id=a.account_id, purpose=ACCESS),
            vault.seal(a.refresh_token, account_id=a.account_id, purpose=REFRESH),
            a.token_version,
            a.access_expires_in,
            a.refresh_expires_in,
            a.refresh_due_in,
            vault.transport.active_id,
        )
        for a in accounts
    ]
    async with repo.pool.acquire() as conn:
        await conn.executemany(
            f"""
            INSERT INTO {repo.schema}.accounts (
                id, client_key, open_id, status, scopes, access_token_ct, refresh_token_ct,
                token_version, access_expires_at, refresh_expires_at, refresh_due_at, transport_key_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9),
                    now() + make_interval(secs => $10), now() + make_interval(secs => $11), $12)
            """,
            records,
        )
