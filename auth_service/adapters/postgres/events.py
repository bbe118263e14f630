"""The events auth_service emits, written to the outbox inside the unit of work that caused them."""

from __future__ import annotations

from auth_service.adapters.postgres.base import TxBase
from auth_service.domain.account import Account
from common.events import AccessTokenData, AccountData, AccountStatus, EventType, encode
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from common.outbox import OutboxRecord, enqueue, enqueue_many


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


class EventsTx(TxBase):
    def _record(
        self, topic: str, key: str, event_type: str, data: AccountData | AccessTokenData
    ) -> OutboxRecord:
        value, headers = encode(event_type, data, correlation_id=self.correlation_id)
        return OutboxRecord(self._prefix + topic, key, value, headers)

    async def _emit(self, topic: str, key: str, event_type: str, data: AccountData | AccessTokenData) -> None:
        r = self._record(topic, key, event_type, data)
        await enqueue(self.conn, self._s, r.topic, r.key, r.value, r.headers)

    async def emit_account(self, event_type: EventType, account: Account, reason: str | None = None) -> None:
        await self._emit(TOPIC_ACCOUNTS, account.id, event_type, account_data(account, reason=reason))

    async def emit_disconnected(self, account: Account, reason: str) -> None:
        data = account_data(account, reason=reason).model_copy(update={"status": AccountStatus.disconnected})
        await self._emit(TOPIC_ACCOUNTS, account.id, EventType.account_disconnected, data)

    async def emit_access_token(self, account: Account, access_token: str) -> None:
        """The current access token, sealed with the transport key (refresh tokens never leave)."""
        await self._emit(
            TOPIC_ACCESS_TOKENS, account.id, EventType.access_token, self._token(account, access_token)
        )

    async def emit_refreshed(self, account: Account, access_token: str) -> None:
        """``account.refreshed`` and the new access token, in that order, in one statement (the
        refresh loop's hot path: one round trip fewer per refresh than two ``_emit`` calls)."""
        records = [
            self._record(TOPIC_ACCOUNTS, account.id, EventType.account_refreshed, account_data(account)),
            self._record(
                TOPIC_ACCESS_TOKENS, account.id, EventType.access_token, self._token(account, access_token)
            ),
        ]
        await enqueue_many(self.conn, self._s, records)

    def _token(self, account: Account, access_token: str) -> AccessTokenData:
        if account.access_expires_at is None:  # every stored account has one; the type allows None
            raise ValueError("an account without an access token expiry has no token to announce")
        return AccessTokenData(
            account_id=account.id,
            open_id=account.open_id,
            scopes=list(account.scopes),
            token_version=account.token_version,
            expires_at=account.access_expires_at,
            ciphertext=self._vault.seal_for_transport(
                access_token, account_id=account.id, token_version=account.token_version
            ),
        )

    async def emit_access_token_tombstone(self, account_id: str) -> None:
        """A null value: compaction then drops the account's token from the topic."""
        await enqueue(self.conn, self._s, self._prefix + TOPIC_ACCESS_TOKENS, account_id, None, [])
