"""Postgres for publish_service: one unit of work over the aggregates (posts, dead letters, the account
and token mirror, the rate log, webhook receipts).

``Repository.transaction()`` yields a :class:`Tx` whose operations commit together (intake stores a
batch of requests with their events in one); the other methods each run in a transaction of their own.
No caller sees a connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from common.db import database_edge, validate_identifier
from common.events import (
    AccessTokenData,
    AccountData,
    ErrorInfo,
    EventType,
    PostRequestedData,
    PostState,
    PostStatusData,
    Progress,
    encode,
)
from common.outbox import enqueue
from publish_service.adapters.accounts import Accounts
from publish_service.adapters.dead_letters import DeadLetters
from publish_service.adapters.pg import Connection, LeaseLost, Topics
from publish_service.adapters.posts import Posts
from publish_service.adapters.rate_log import RateLog
from publish_service.adapters.requests import Requests
from publish_service.adapters.webhook_receipts import WebhookReceipts
from publish_service.domain import rate_window
from publish_service.domain.post import AccountToken, IntakeOutcome, PostPatch, PostRequest, PostRow

__all__ = ["LeaseLost", "Repository", "Topics", "Tx"]


@database_edge
class Tx:
    """One open transaction: what intake stores for a batch of requests commits or rolls back together."""

    def __init__(self, conn: Connection, repo: Repository) -> None:
        self._conn = conn
        self._repo = repo

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: what fails inside is undone, the rest of the batch stays."""
        async with self._conn.transaction():
            yield

    async def account_known(self, account_id: str) -> bool:
        return await self._repo.accounts.known(self._conn, account_id)

    async def accounts_known(self, account_ids: set[str]) -> set[str]:
        return await self._repo.accounts.known_of(self._conn, account_ids)

    async def record_request(
        self, post: PostRequestedData, raw: bytes, correlation_id: str | None, key: bytes | None
    ) -> IntakeOutcome:
        return await self._repo.posts.record_request(self._conn, post, raw, correlation_id, key)

    async def record_requests(self, requests: Sequence[PostRequest]) -> list[IntakeOutcome]:
        """Store a batch of requests at once (see ``adapters/requests.py``); the outcome of each."""
        return await self._repo.requests.record(self._conn, requests)

    async def reject_event(
        self,
        *,
        post_id: str,
        account_id: str,
        code: str,
        message: str,
        raw: bytes | None,
        key: bytes | None,
        correlation_id: str | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """A record we could not accept at all: a ``rejected`` status and the bytes to the DLQ."""
        data = PostStatusData(
            post_id=post_id,
            account_id=account_id,
            seq=1,
            state=PostState.rejected,
            error=ErrorInfo(code=code, message=message),
        )
        value, event_headers = encode(EventType.post_status, data, correlation_id=correlation_id)
        await enqueue(self._conn, self._repo.schema, self._repo.topics.status, post_id, value, event_headers)
        self._repo.posts.events.counted(PostState.rejected.value)
        await self._repo.dead_letters.send_bounded(self._conn, key, raw, code, message, headers)


@database_edge
class Repository:
    def __init__(
        self,
        pool: Any,
        schema: str,
        topics: Topics,
        *,
        rate_window_s: float = rate_window.WINDOW_S,
        on_transition: Callable[[str], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        self._pool = pool
        self.schema = validate_identifier(schema)
        self.topics = topics
        self.dead_letters = DeadLetters(self.schema, topics.dlq, on_dead_letter)
        self.posts = Posts(self.schema, topics.status, self.dead_letters, on_transition, on_error)
        self.requests = Requests(self.schema, self.posts, self.dead_letters)
        self.accounts = Accounts(self.schema, topics.refresh)
        self.rate_log = RateLog(self.schema, rate_window_s)
        self.receipts = WebhookReceipts(self.schema)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield Tx(conn, self)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        async with self._pool.acquire() as conn:
            yield conn

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    # ------------------------------------------------------------------------------ posts

    async def claim(self, owner: str, lease_s: float) -> PostRow | None:
        return await self.posts.claim(self._pool, owner, lease_s)

    async def next_due_in(self) -> float | None:
        return await self.posts.next_due_in(self._pool)

    async def save(self, row: PostRow, owner: str, lease_s: float, patch: PostPatch | None = None) -> PostRow:
        return await self.posts.save(self._pool, row, owner, lease_s, patch or PostPatch())

    async def release(self, row: PostRow, owner: str, delay_s: float, patch: PostPatch | None = None) -> None:
        await self.posts.release(self._pool, row, owner, delay_s, patch or PostPatch())

    async def transition(
        self,
        row: PostRow,
        target: PostState,
        *,
        owner: str | None,
        progress: Progress | None = None,
        error: ErrorInfo | None = None,
        patch: PostPatch | None = None,
    ) -> PostRow:
        async with self._connection() as conn:
            return await self.posts.transition(
                conn, row, target, owner=owner, progress=progress, error=error, patch=patch or PostPatch()
            )

    async def emit_update(
        self,
        row: PostRow,
        *,
        owner: str | None,
        progress: Progress | None = None,
        patch: PostPatch | None = None,
    ) -> PostRow:
        async with self._connection() as conn:
            return await self.posts.emit_update(
                conn, row, owner=owner, progress=progress, patch=patch or PostPatch()
            )

    async def get(self, post_id: str) -> PostRow | None:
        return await self.posts.get(self._pool, post_id)

    async def by_publish_id(self, publish_id: str) -> PostRow | None:
        return await self.posts.by_publish_id(self._pool, publish_id)

    async def in_doubt_for(self, open_id: str) -> list[PostRow]:
        return await self.posts.in_doubt_for(self._pool, open_id)

    async def wake(self, post_id: str) -> None:
        await self.posts.wake(self._pool, post_id)

    async def oldest_by_state(self) -> dict[str, float]:
        return await self.posts.oldest_by_state(self._pool)

    async def count_by_state(self) -> dict[str, int]:
        return await self.posts.count_by_state(self._pool)

    # ------------------------------------------------------------------------------ accounts/tokens

    async def upsert_token(self, data: AccessTokenData) -> bool:
        async with self._connection() as conn:
            return await self.accounts.upsert_token(conn, data)

    async def upsert_account(self, data: AccountData, partition: int, offset: int) -> bool:
        return await self.accounts.upsert_account(self._pool, data, partition, offset)

    async def forget_token(self, account_id: str) -> bool:
        return await self.accounts.forget_token(self._pool, account_id)

    async def account_token(self, account_id: str) -> AccountToken | None:
        return await self.accounts.token(self._pool, account_id)

    async def request_refresh(self, account_id: str, seen_version: int, reason: str) -> bool:
        async with self._connection() as conn:
            return await self.accounts.request_refresh(conn, account_id, seen_version, reason)

    # ------------------------------------------------------------------------------ rate log, webhooks

    async def acquire_slot(self, account_id: str, endpoint: rate_window.Endpoint) -> float:
        async with self._connection() as conn:
            return await self.rate_log.acquire_slot(conn, account_id, endpoint)

    async def first_delivery(self, dedupe_key: str) -> bool:
        return await self.receipts.first_delivery(self._pool, dedupe_key)

    async def relay_authorization_removed(self, open_id: str, dedupe_key: str) -> list[str] | None:
        """The accounts told; ``None`` for a delivery already relayed. The receipt is kept only with a
        relay (one transaction): a removal that overtakes the account's connect event is not marked
        seen, so TikTok's redelivery finds the account."""
        async with self._connection() as conn, conn.transaction():
            accounts = await self.accounts.of_open_id(conn, open_id)
            if not accounts:
                return []
            if not await self.receipts.first_delivery(conn, dedupe_key):
                return None
            await self.accounts.relay_authorization_removed(conn, accounts)
            return [account_id for account_id, _ in accounts]

    async def prune_webhook_receipts(self, keep_s: float) -> int:
        return await self.receipts.prune(self._pool, keep_s)
