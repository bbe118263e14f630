"""What the worker needs from the repository, TikTok and object storage: small protocols, so a step
depends on the operations it calls, not on the adapters that implement them."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from common.events import (
    AccessTokenData,
    AccountData,
    AccountStatsData,
    ErrorInfo,
    PostRequestedData,
    PostState,
    Progress,
)
from common.s3 import ObjectInfo
from common.tiktok.client import CreatorInfo, InitResult, PublishStatus, PutResult
from publish_service.adapters.insights import DueAccount, DueSlot, SlotResult
from publish_service.domain.media import Reader
from publish_service.domain.post import AccountToken, IntakeOutcome, PostPatch, PostRequest, PostRow
from publish_service.domain.rate_window import Endpoint


class Transitions(Protocol):
    """Reading a post and moving it on, with its status event."""

    async def get(self, post_id: str) -> PostRow | None: ...
    async def transition(
        self,
        row: PostRow,
        target: PostState,
        *,
        owner: str | None,
        progress: Progress | None = None,
        error: ErrorInfo | None = None,
        patch: PostPatch | None = None,
    ) -> PostRow: ...
    async def emit_update(
        self,
        row: PostRow,
        *,
        owner: str | None,
        progress: Progress | None = None,
        patch: PostPatch | None = None,
    ) -> PostRow: ...


class PostStore(Transitions, Protocol):
    """What the worker needs: leases, checkpoints, the account's token, refresh requests, rate slots."""

    async def claim(self, owner: str, lease_s: float) -> PostRow | None: ...
    async def save(
        self, row: PostRow, owner: str, lease_s: float, patch: PostPatch | None = None
    ) -> PostRow: ...
    async def release(
        self, row: PostRow, owner: str, delay_s: float, patch: PostPatch | None = None
    ) -> None: ...
    async def account_token(self, account_id: str) -> AccountToken | None: ...
    async def request_refresh(self, account_id: str, seen_version: int, reason: str) -> bool: ...
    async def acquire_slot(self, account_id: str, endpoint: Endpoint) -> float: ...


class WorkSignal(Protocol):
    """Tells idle workers that a post became due (a counter that moves, and a wait for it to move)."""

    generation: int

    async def wait(self, seen: int, seconds: float) -> None: ...


class TikTokApi(Protocol):
    async def creator_info(self, access_token: str) -> CreatorInfo: ...
    async def init_direct_video(
        self, access_token: str, post_info: Mapping[str, Any], source_info: Mapping[str, Any]
    ) -> InitResult: ...
    async def init_inbox_video(self, access_token: str, source_info: Mapping[str, Any]) -> InitResult: ...
    async def init_photo(
        self, access_token: str, post_mode: str, post_info: Mapping[str, Any], source_info: Mapping[str, Any]
    ) -> InitResult: ...
    async def fetch_status(self, access_token: str, publish_id: str) -> PublishStatus: ...
    async def put_chunk(
        self,
        upload_url: str,
        body: AsyncIterable[bytes],
        *,
        first: int,
        last: int,
        total: int,
        content_type: str = "video/mp4",
    ) -> PutResult: ...


class MediaStore(Protocol):
    async def head(self, bucket: str, key: str) -> ObjectInfo: ...
    def reader(self, bucket: str, key: str, size: int) -> Reader: ...
    def stream(self, bucket: str, key: str, first: int, last: int, piece: int) -> AsyncIterator[bytes]: ...
    async def pull_url(self, bucket: str, key: str) -> str: ...


class WebhookStore(Transitions, Protocol):
    async def first_delivery(self, dedupe_key: str) -> bool: ...
    async def by_publish_id(self, publish_id: str) -> PostRow | None: ...
    async def in_doubt_for(self, open_id: str) -> list[PostRow]: ...
    async def wake(self, post_id: str) -> None: ...
    async def relay_authorization_removed(self, open_id: str, dedupe_key: str) -> list[str] | None: ...


class StateStore(Protocol):
    async def upsert_token(self, data: AccessTokenData) -> bool: ...
    async def upsert_account(self, data: AccountData, partition: int, offset: int) -> bool: ...
    async def forget_token(self, account_id: str) -> bool: ...


class PostCounts(Protocol):
    async def count_by_state(self) -> dict[str, int]: ...
    async def oldest_by_state(self) -> dict[str, float]: ...


class IntakeTx(Protocol):
    def savepoint(self) -> AbstractAsyncContextManager[None]: ...
    async def account_known(self, account_id: str) -> bool: ...
    async def accounts_known(self, account_ids: set[str]) -> set[str]: ...
    async def record_requests(self, requests: Sequence[PostRequest]) -> list[IntakeOutcome]: ...
    async def record_request(
        self, post: PostRequestedData, raw: bytes, correlation_id: str | None, key: bytes | None
    ) -> IntakeOutcome: ...
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
    ) -> None: ...


class InsightsStore(Protocol):
    """The metrics schedule and account stats rows (publish_service.adapters.insights)."""

    async def plan(self, schedule_s: Sequence[float], limit: int = 1000) -> int: ...
    async def plan_accounts(self) -> None: ...
    async def claim_slots(self, owner: str, lease_s: float, limit: int) -> list[DueSlot]: ...
    async def release_slots(
        self, slots: Sequence[DueSlot], owner: str, delay_s: float, *, failed: bool
    ) -> None: ...
    async def metadata(self, post_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]: ...
    async def finish_slots(self, results: Sequence[SlotResult], owner: str) -> int: ...
    async def latest_by_account(self) -> dict[str, tuple[int, int]]: ...
    async def claim_account(self, owner: str, lease_s: float) -> DueAccount | None: ...
    async def release_account(self, account_id: str, owner: str, delay_s: float, *, failed: bool) -> None: ...
    async def finish_account(
        self, account_id: str, owner: str, data: AccountStatsData | None, next_in_s: float
    ) -> bool: ...


class IntakeStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[IntakeTx]: ...
