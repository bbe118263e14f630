"""The Postgres side of auth_service: accounts with their sealed tokens, OAuth states, the outbox.

Times that decide who may act (leases, due times, expiry) come from the database's clock, so that
replicas with skewed clocks still agree. Handlers open a unit of work with :meth:`Repository.transaction`
and call :class:`Tx` methods; the events they emit there commit or roll back with the state change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from auth_service.adapters.vault import ACCESS, PKCE, REFRESH, Vault, pkce_binding
from auth_service.domain.account import Account
from auth_service.domain.oauth_state import StateRecord
from common.cipher import DecryptionFailed
from common.db import validate_identifier
from common.events import AccessTokenData, AccountData, AccountStatus, EventType, encode
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from common.outbox import enqueue

log = structlog.get_logger(__name__)

_ACCOUNT_COLUMNS = """
    id, client_key, open_id, status, scopes, display_name, union_id, avatar_url, token_version,
    access_expires_at, refresh_expires_at, refresh_due_at, last_refreshed_at, refresh_failures,
    last_error, created_at, updated_at
"""


def _account(row: Any) -> Account:
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


def _seconds(value: int | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class NewTokens:
    """A token pair to store, with the lifetimes TikTok gave it and when to refresh it."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int | None  # None: TikTok did not say (unknown, kept on a refresh)
    scopes: tuple[str, ...]
    refresh_in: float

    def __repr__(self) -> str:
        return f"NewTokens(expires_in={self.expires_in}, scopes={self.scopes})"


@dataclass(frozen=True)
class Profile:
    display_name: str | None = None
    union_id: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True)
class Claim:
    """An account this replica holds the refresh lease on."""

    account_id: str
    open_id: str
    token_version: int
    refresh_token: str
    refresh_expired: bool
    refresh_failures: int

    def __repr__(self) -> str:
        return f"Claim({self.account_id!r}, v{self.token_version})"


@dataclass(frozen=True)
class SeedAccount:
    """An account inserted directly (tests and benchmarks), as if it had been connected before."""

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


class Tx:
    """One open transaction: account rows, OAuth states and outbox events change together."""

    def __init__(self, conn: Any, schema: str, vault: Vault, topic_prefix: str, correlation_id: str | None):
        self.conn = conn
        self._s = schema
        self._vault = vault
        self._prefix = topic_prefix
        self.correlation_id = correlation_id

    # ---------------------------------------------------------------- accounts

    async def now(self) -> datetime:
        value: datetime = await self.conn.fetchval("SELECT now()")
        return value

    async def lock_by_open_id(self, client_key: str, open_id: str) -> Account | None:
        row = await self.conn.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS} FROM {self._s}.accounts"
            " WHERE client_key = $1 AND open_id = $2 FOR UPDATE",
            client_key,
            open_id,
        )
        return _account(row) if row else None

    async def lock(self, account_id: str) -> Account | None:
        row = await self.conn.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS} FROM {self._s}.accounts WHERE id = $1 FOR UPDATE", account_id
        )
        return _account(row) if row else None

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
            RETURNING {_ACCOUNT_COLUMNS}
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
        return _account(row) if row else None

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
            RETURNING {_ACCOUNT_COLUMNS}
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
        return _account(row)

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
            RETURNING {_ACCOUNT_COLUMNS}
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
        return _account(row) if row else None

    async def require_reauth(self, claim: Claim, reason: str) -> Account | None:
        """Stop refreshing: the user must connect again. None when the claim's version is stale."""
        row = await self.conn.fetchrow(
            f"""
            UPDATE {self._s}.accounts SET
                status = 'reauth_required', refresh_due_at = NULL, lease_owner = NULL,
                lease_until = NULL, last_error = $3, updated_at = now()
            WHERE id = $1 AND token_version = $2 AND status = 'connected'
            RETURNING {_ACCOUNT_COLUMNS}
            """,
            claim.account_id,
            claim.token_version,
            reason,
        )
        return _account(row) if row else None

    async def delete(self, account_id: str) -> None:
        await self.conn.execute(f"DELETE FROM {self._s}.accounts WHERE id = $1", account_id)

    async def access_token(self, account_id: str) -> str:
        ct: str = await self.conn.fetchval(
            f"SELECT access_token_ct FROM {self._s}.accounts WHERE id = $1", account_id
        )
        return self._vault.open(ct, account_id=account_id, purpose=ACCESS)

    async def rotate_accounts(self, after: str, limit: int) -> tuple[str | None, int, int]:
        """Re-encrypt the next ``limit`` accounts after ``after`` under the active keys.

        Returns (last id seen or None at the end, ciphertexts rewritten, access tokens re-announced).
        Rows are locked for the length of this short transaction only; a refresh committing at the
        same moment waits for it, and a value is always decrypted from what is stored now.
        """
        rows = await self.conn.fetch(
            f"SELECT {_ACCOUNT_COLUMNS}, access_token_ct, refresh_token_ct, transport_key_id"
            f" FROM {self._s}.accounts WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE",
            after,
            limit,
        )
        rewritten = announced = 0
        tokens = self._vault.tokens
        for row in rows:
            account_id = row["id"]
            access_ct, refresh_ct = row["access_token_ct"], row["refresh_token_ct"]
            new_access = tokens.rotate(access_ct, account_id=account_id, purpose=ACCESS)
            new_refresh = tokens.rotate(refresh_ct, account_id=account_id, purpose=REFRESH)
            stale_transport = row["transport_key_id"] != self._vault.transport.active_id
            if new_access == access_ct and new_refresh == refresh_ct and not stale_transport:
                continue
            await self.conn.execute(
                f"UPDATE {self._s}.accounts SET access_token_ct = $2, refresh_token_ct = $3,"
                " transport_key_id = $4 WHERE id = $1",
                account_id,
                new_access,
                new_refresh,
                self._vault.transport.active_id,
            )
            rewritten += (new_access != access_ct) + (new_refresh != refresh_ct)
            if stale_transport and row["status"] == AccountStatus.connected:
                # Consumers can drop the old transport key once the compacted topic holds only new ones.
                token = self._vault.open(new_access, account_id=account_id, purpose=ACCESS)
                await self.emit_access_token(_account(row), token)
                announced += 1
        return (rows[-1]["id"] if rows else None), rewritten, announced

    async def rotate_states(self) -> int:
        rows = await self.conn.fetch(
            f"SELECT state_hash, code_verifier_ct FROM {self._s}.oauth_states"
            " WHERE code_verifier_ct IS NOT NULL FOR UPDATE"
        )
        changed = 0
        for row in rows:
            binding = pkce_binding(bytes(row["state_hash"]))
            new = self._vault.tokens.rotate(row["code_verifier_ct"], account_id=binding, purpose=PKCE)
            if new != row["code_verifier_ct"]:
                await self.conn.execute(
                    f"UPDATE {self._s}.oauth_states SET code_verifier_ct = $2 WHERE state_hash = $1",
                    row["state_hash"],
                    new,
                )
                changed += 1
        return changed

    # ---------------------------------------------------------------- OAuth states

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

    # ---------------------------------------------------------------- events (via the outbox)

    async def _emit(self, topic: str, key: str, event_type: str, data: AccountData | AccessTokenData) -> None:
        value, headers = encode(event_type, data, correlation_id=self.correlation_id)
        await enqueue(self.conn, self._s, self._prefix + topic, key, value, headers)

    async def emit_account(self, event_type: EventType, account: Account, reason: str | None = None) -> None:
        await self._emit(TOPIC_ACCOUNTS, account.id, event_type, account_data(account, reason=reason))

    async def emit_disconnected(self, account: Account, reason: str) -> None:
        data = account_data(account, reason=reason).model_copy(update={"status": AccountStatus.disconnected})
        await self._emit(TOPIC_ACCOUNTS, account.id, EventType.account_disconnected, data)

    async def emit_access_token(self, account: Account, access_token: str) -> None:
        """The current access token, sealed with the transport key (refresh tokens never leave)."""
        if account.access_expires_at is None:  # every stored account has one; the type allows None
            raise ValueError("an account without an access token expiry has no token to announce")
        data = AccessTokenData(
            account_id=account.id,
            open_id=account.open_id,
            scopes=list(account.scopes),
            token_version=account.token_version,
            expires_at=account.access_expires_at,
            ciphertext=self._vault.seal_for_transport(access_token, account_id=account.id),
        )
        await self._emit(TOPIC_ACCESS_TOKENS, account.id, EventType.access_token, data)

    async def emit_access_token_tombstone(self, account_id: str) -> None:
        """A null value: compaction then drops the account's token from the topic."""
        await enqueue(self.conn, self._s, self._prefix + TOPIC_ACCESS_TOKENS, account_id, None, [])


def account_data(account: Account, reason: str | None = None) -> AccountData:
    return AccountData(
        account_id=account.id,
        open_id=account.open_id,
        status=account.status,
        scopes=list(account.scopes),
        display_name=account.display_name,
        access_expires_at=account.access_expires_at,
        refresh_expires_at=account.refresh_expires_at,
        token_version=account.token_version,
        reason=reason,
    )


class Repository:
    def __init__(self, pool: Any, vault: Vault, *, schema: str = "auth", topic_prefix: str = "") -> None:
        self._pool = pool
        self._s = validate_identifier(schema)
        self.vault = vault
        self._prefix = topic_prefix

    @property
    def schema(self) -> str:
        return self._s

    @asynccontextmanager
    async def transaction(self, correlation_id: str | None = None) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield Tx(conn, self._s, self.vault, self._prefix, correlation_id)

    # ---------------------------------------------------------------- reads

    async def get(self, account_id: str) -> Account | None:
        row = await self._pool.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS} FROM {self._s}.accounts WHERE id = $1", account_id
        )
        return _account(row) if row else None

    async def list_accounts(self, *, status: str | None, after: str | None, limit: int) -> list[Account]:
        rows = await self._pool.fetch(
            f"SELECT {_ACCOUNT_COLUMNS} FROM {self._s}.accounts"
            " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR id > $2)"
            " ORDER BY id LIMIT $3",
            status,
            after,
            limit,
        )
        return [_account(r) for r in rows]

    async def access_token(self, account_id: str) -> str | None:
        ct = await self._pool.fetchval(
            f"SELECT access_token_ct FROM {self._s}.accounts WHERE id = $1", account_id
        )
        if ct is None:
            return None
        return self.vault.open(ct, account_id=account_id, purpose=ACCESS)

    # ---------------------------------------------------------------- refresh claims

    async def _claims(self, rows: Sequence[Any], owner: str) -> list[Claim]:
        """Open the claimed rows' refresh tokens; a row that won't open is parked, not retried hot."""
        claims, unreadable = [], []
        for row in rows:
            try:
                claims.append(self._claim(row))
            except DecryptionFailed:
                unreadable.append(row["id"])
        if unreadable:
            # A key missing from the ring is an operator's mistake: say so loudly, retry in an hour.
            log.error("refresh_token_unreadable", account_ids=unreadable[:20], count=len(unreadable))
            await self._pool.execute(
                f"UPDATE {self._s}.accounts SET lease_owner = NULL, lease_until = NULL,"
                " last_error = 'decryption_failed', refresh_due_at = now() + interval '1 hour'"
                " WHERE id = ANY($1::text[]) AND lease_owner = $2",
                unreadable,
                owner,
            )
        return claims

    def _claim(self, row: Any) -> Claim:
        return Claim(
            account_id=row["id"],
            open_id=row["open_id"],
            token_version=int(row["token_version"]),
            refresh_token=self.vault.open(row["refresh_token_ct"], account_id=row["id"], purpose=REFRESH),
            refresh_expired=bool(row["refresh_expired"]),
            refresh_failures=int(row["refresh_failures"]),
        )

    async def claim_due(self, owner: str, limit: int, lease_s: float) -> list[Claim]:
        """Lease up to ``limit`` due accounts to ``owner``; rows another replica is claiming are skipped."""
        rows = await self._pool.fetch(
            f"""
            WITH due AS (
                SELECT id FROM {self._s}.accounts
                WHERE status = 'connected' AND refresh_due_at <= now()
                  AND (lease_until IS NULL OR lease_until < now())
                ORDER BY refresh_due_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {self._s}.accounts a
               SET lease_owner = $1, lease_until = now() + make_interval(secs => $3)
              FROM due WHERE a.id = due.id
            RETURNING a.id, a.open_id, a.token_version, a.refresh_token_ct, a.refresh_failures,
                      coalesce(a.refresh_expires_at <= now(), false) AS refresh_expired
            """,
            owner,
            limit,
            lease_s,
        )
        return await self._claims(rows, owner)

    async def claim_requested(
        self, account_id: str, owner: str, lease_s: float, seen_version: int | None, min_interval_s: float
    ) -> Claim | None:
        """Lease one account for an on-demand refresh, unless the request is already answered.

        Skipped when the account is not connected, when a refresh is in flight (leased), when the
        requester saw an older version than the current one, or (no version given) when the last
        refresh is younger than ``min_interval_s``: a storm of requests causes one refresh.
        """
        row = await self._pool.fetchrow(
            f"""
            WITH target AS (
                SELECT id FROM {self._s}.accounts
                WHERE id = $1 AND status = 'connected'
                  AND (lease_until IS NULL OR lease_until < now())
                  AND CASE WHEN $4::bigint IS NULL
                           THEN last_refreshed_at IS NULL
                                OR last_refreshed_at < now() - make_interval(secs => $5)
                           ELSE token_version <= $4::bigint END
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {self._s}.accounts a
               SET lease_owner = $2, lease_until = now() + make_interval(secs => $3)
              FROM target WHERE a.id = target.id
            RETURNING a.id, a.open_id, a.token_version, a.refresh_token_ct, a.refresh_failures,
                      coalesce(a.refresh_expires_at <= now(), false) AS refresh_expired
            """,
            account_id,
            owner,
            lease_s,
            seen_version,
            min_interval_s,
        )
        claims = await self._claims([row] if row else [], owner)
        return claims[0] if claims else None

    async def release_for_retry(self, claim: Claim, owner: str, retry_in_s: float, error: str) -> None:
        await self._pool.execute(
            f"""
            UPDATE {self._s}.accounts SET
                refresh_failures = refresh_failures + 1, last_error = $4,
                refresh_due_at = now() + make_interval(secs => $3),
                lease_owner = NULL, lease_until = NULL, updated_at = now()
            WHERE id = $1 AND lease_owner = $2 AND token_version = $5
            """,
            claim.account_id,
            owner,
            retry_in_s,
            error,
            claim.token_version,
        )

    async def release(self, claim: Claim, owner: str) -> None:
        await self._pool.execute(
            f"UPDATE {self._s}.accounts SET lease_owner = NULL, lease_until = NULL"
            " WHERE id = $1 AND lease_owner = $2",
            claim.account_id,
            owner,
        )

    # ---------------------------------------------------------------- housekeeping

    async def delete_old_states(self, older_than_s: float) -> int:
        result: str = await self._pool.execute(
            f"DELETE FROM {self._s}.oauth_states WHERE created_at < now() - make_interval(secs => $1)",
            older_than_s,
        )
        return int(result.split()[-1])

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def seed(self, accounts: Sequence[SeedAccount]) -> None:
        """Insert accounts directly (tests, benchmarks): sealed exactly as a connect would."""
        records = [
            (
                a.account_id,
                a.client_key,
                a.open_id,
                "connected",
                list(a.scopes),
                self.vault.seal(a.access_token, account_id=a.account_id, purpose=ACCESS),
                self.vault.seal(a.refresh_token, account_id=a.account_id, purpose=REFRESH),
                a.token_version,
                a.access_expires_in,
                a.refresh_expires_in,
                a.refresh_due_in,
                self.vault.transport.active_id,
            )
            for a in accounts
        ]
        async with self._pool.acquire() as conn:
            await conn.executemany(
                f"""
                INSERT INTO {self._s}.accounts (
                    id, client_key, open_id, status, scopes, access_token_ct, refresh_token_ct,
                    token_version, access_expires_at, refresh_expires_at, refresh_due_at, transport_key_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9),
                        now() + make_interval(secs => $10), now() + make_interval(secs => $11), $12)
                """,
                records,
            )
