"""This service's mirror of auth_service's accounts and access tokens, and the refresh requests it sends."""

from __future__ import annotations

from common.events import (
    AUTHORIZATION_REMOVED,
    AccessTokenData,
    AccountData,
    EventType,
    RefreshRequestedData,
    encode,
)
from common.outbox import enqueue
from publish_service.adapters.pg import Connection, Executor
from publish_service.domain.post import AccountToken


class Accounts:
    def __init__(self, schema: str, refresh_topic: str) -> None:
        self._s = schema
        self._refresh_topic = refresh_topic

    async def upsert_token(self, db: Connection, data: AccessTokenData) -> bool:
        """Keep the newest token per account (by token_version); wake posts that waited for it."""
        async with db.transaction():
            updated = await db.fetchval(
                f"""
                INSERT INTO {self._s}.accounts (account_id, open_id, scopes, token_version,
                                                token_ciphertext, token_expires_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (account_id) DO UPDATE
                SET open_id = excluded.open_id, scopes = excluded.scopes,
                    token_version = excluded.token_version, token_ciphertext = excluded.token_ciphertext,
                    token_expires_at = excluded.token_expires_at, updated_at = now()
                WHERE {self._s}.accounts.token_version < excluded.token_version
                   OR ({self._s}.accounts.token_version = excluded.token_version
                       AND {self._s}.accounts.token_ciphertext IS NOT NULL
                       AND {self._s}.accounts.token_ciphertext IS DISTINCT FROM excluded.token_ciphertext)
                RETURNING true
                """,
                data.account_id,
                data.open_id,
                list(data.scopes),
                data.token_version,
                data.ciphertext,
                data.expires_at,
            )
            if updated:
                await db.execute(
                    f"""
                    UPDATE {self._s}.posts SET next_attempt_at = now(), awaiting_token_version = NULL
                    WHERE account_id = $1 AND awaiting_token_version IS NOT NULL
                      AND awaiting_token_version < $2
                    """,
                    data.account_id,
                    data.token_version,
                )
            return bool(updated)

    async def upsert_account(self, db: Executor, data: AccountData, partition: int, offset: int) -> bool:
        """Apply an account event unless a later one (by Kafka offset) was applied already."""
        updated = await db.fetchval(
            f"""
            INSERT INTO {self._s}.accounts (account_id, open_id, status, scopes, account_partition,
                                            account_offset)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (account_id) DO UPDATE
            SET open_id = excluded.open_id, status = excluded.status, scopes = excluded.scopes,
                account_partition = excluded.account_partition, account_offset = excluded.account_offset,
                updated_at = now()
            WHERE {self._s}.accounts.account_offset IS NULL
               OR {self._s}.accounts.account_partition IS DISTINCT FROM excluded.account_partition
               OR {self._s}.accounts.account_offset < excluded.account_offset
            RETURNING true
            """,
            data.account_id,
            data.open_id,
            data.status.value,
            list(data.scopes),
            partition,
            offset,
        )
        return bool(updated)

    async def forget_token(self, db: Executor, account_id: str) -> bool:
        """Drop the account's token (auth_service's tombstone); the version stays, so a replayed older
        token record cannot bring it back."""
        forgotten = await db.fetchval(
            f"""
            UPDATE {self._s}.accounts SET token_ciphertext = NULL, token_expires_at = NULL, updated_at = now()
            WHERE account_id = $1 AND token_ciphertext IS NOT NULL
            RETURNING true
            """,
            account_id,
        )
        return bool(forgotten)

    async def token(self, db: Executor, account_id: str) -> AccountToken | None:
        r = await db.fetchrow(
            f"""SELECT account_id, status, token_version, token_ciphertext, token_expires_at, scopes
                FROM {self._s}.accounts WHERE account_id = $1""",
            account_id,
        )
        if r is None:
            return None
        return AccountToken(
            r["account_id"],
            r["status"],
            r["token_version"],
            r["token_ciphertext"],
            r["token_expires_at"],
            tuple(r["scopes"] or ()),
        )

    async def known(self, db: Executor, account_id: str) -> bool:
        found = await db.fetchval(f"SELECT true FROM {self._s}.accounts WHERE account_id = $1", account_id)
        return bool(found)

    async def of_open_id(self, db: Executor, open_id: str) -> list[tuple[str, int]]:
        """The accounts (id, token version) this service knows for a TikTok user."""
        rows = await db.fetch(
            f"SELECT account_id, token_version FROM {self._s}.accounts WHERE open_id = $1", open_id
        )
        return [(r["account_id"], r["token_version"]) for r in rows]

    async def relay_authorization_removed(self, db: Connection, accounts: list[tuple[str, int]]) -> None:
        """Tell auth_service that TikTok says this creator removed the app (it forgets the account)."""
        for account_id, token_version in accounts:
            data = RefreshRequestedData(
                account_id=account_id,
                reason=AUTHORIZATION_REMOVED,
                seen_token_version=token_version if token_version >= 0 else None,
            )
            value, headers = encode(EventType.refresh_requested, data)
            await enqueue(db, self._s, self._refresh_topic, account_id, value, headers)

    async def known_of(self, db: Executor, account_ids: set[str]) -> set[str]:
        """Which of ``account_ids`` this service has heard of (one query for a batch)."""
        rows = await db.fetch(
            f"SELECT account_id FROM {self._s}.accounts WHERE account_id = ANY($1::text[])",
            sorted(account_ids),
        )
        return {r["account_id"] for r in rows}

    async def request_refresh(self, db: Connection, account_id: str, seen_version: int, reason: str) -> bool:
        """Ask auth_service for a new token, once per seen version (repeated after 60 s of silence)."""
        async with db.transaction():
            asked = await db.fetchval(
                f"""
                UPDATE {self._s}.accounts
                SET refresh_requested_version = $2, refresh_requested_at = now()
                WHERE account_id = $1 AND token_version <= $2
                  AND (refresh_requested_version IS DISTINCT FROM $2
                       OR refresh_requested_at < now() - interval '60 seconds')
                RETURNING true
                """,
                account_id,
                seen_version,
            )
            if not asked:
                return False
            data = RefreshRequestedData(account_id=account_id, reason=reason, seen_token_version=seen_version)
            value, headers = encode(EventType.refresh_requested, data)
            await enqueue(db, self._s, self._refresh_topic, account_id, value, headers)
            return True
