"""What every worker step shares: the post's token, a rate-limit slot, one TikTok call, and the two
ways a step ends early (:class:`Deferred`, :class:`Failed`), which the claim loop executes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from common.cipher import DecryptionFailed, TokenCipher, transport_purpose
from common.events import ErrorInfo
from common.tasks import sleep_or_stop
from common.tiktok.client import PublishStatus
from common.tiktok.errors import TikTokError
from publish_service.domain import decisions, validation
from publish_service.domain.post import PostPatch, PostRow
from publish_service.domain.rate_window import Endpoint
from publish_service.domain.validation import Rejected
from publish_service.handlers.ports import MediaStore, PostStore, TikTokApi
from publish_service.metrics import Metrics
from publish_service.settings import Settings

log = structlog.get_logger(__name__)

UPLOAD_URL_PURPOSE = "upload_url"

T = TypeVar("T")

SHORT_WAIT_S = 3.0  # a rate-limit wait this short is slept through instead of giving the lease back


class Deferred(Exception):
    """Give the lease back; the post is due again in ``delay_s``, with ``patch`` saved."""

    def __init__(self, delay_s: float, reason: str, patch: PostPatch | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason
        self.patch: PostPatch = patch if patch is not None else PostPatch()

    @classmethod
    def of(cls, decision: decisions.Defer) -> Deferred:
        patch = PostPatch(failures=decision.failures) if decision.failures is not None else PostPatch()
        return cls(decision.delay_s, decision.reason, patch)


class Failed(Exception):
    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Steps:
    """The worker's dependencies, and the calls every step makes."""

    repo: PostStore
    tiktok: TikTokApi
    media: MediaStore
    cipher: TokenCipher
    settings: Settings
    stopping: asyncio.Event
    metrics: Metrics
    owner: str
    """This worker task's lease owner: unique per task (``worker.worker_owner``)."""

    async def renew_for(self, row: PostRow, wait_s: float) -> PostRow:
        """Before a wait of ``wait_s``: extend the lease past it, so no other worker claims the post
        meanwhile; raises ``LeaseLost`` if it was taken already (then this worker must not write)."""
        return await self.repo.save(row, self.owner, wait_s + self.settings.lease_s)

    def seal_upload_url(self, row: PostRow, upload_url: str) -> str:
        """An upload_url's ``upload_token`` is a bearer credential for an hour: it is stored only
        encrypted (the transport key ring, bound to the post), never readable by a database reader."""
        return self.cipher.encrypt(upload_url, account_id=row.post_id, purpose=UPLOAD_URL_PURPOSE)

    def open_upload_url(self, row: PostRow) -> str | None:
        """The stored upload_url, or None when it does not open (stored in plain text before the
        upgrade, or under a key since removed): then the upload task is treated as gone."""
        if row.upload_url is None:
            return None
        try:
            return self.cipher.decrypt(row.upload_url, account_id=row.post_id, purpose=UPLOAD_URL_PURPOSE)
        except DecryptionFailed:
            return None

    async def token(self, row: PostRow) -> tuple[str, int]:
        account = await self.repo.account_token(row.account_id)
        if account is not None and account.status in ("disconnected", "reauth_required", "revoked"):
            why = (
                "the creator removed the app's access in TikTok; they must connect the account again"
                if account.status == "revoked"
                else "the creator must reconnect the account"
            )
            raise Failed(ErrorInfo(code=f"account_{account.status}", message=why))
        if account is not None and (needed := validation.missing_scope(row.request.mode, account.scopes)):
            raise Rejected(
                "scope_missing",
                f"the creator did not grant {needed}, which a {row.request.mode.value} post needs "
                f"(the account is connected for drafts only; send mode=draft, or reconnect and allow it)"
                if needed == "video.publish"
                else f"the creator did not grant {needed}, which a {row.request.mode.value} post needs",
            )
        if account is None:
            # The request may have overtaken the account's connect event (auth_service's outbox, then
            # Kafka): wait for it (state sync wakes the post), and only then call the account unknown.
            waited = (now() - row.created_at).total_seconds()
            grace = self.settings.unknown_account_grace_s
            if waited >= grace:
                raise Rejected(
                    "unknown_account",
                    f"account {row.account_id!r} is not connected "
                    f"(no account or token event in {grace:.0f}s)",
                )
            raise Deferred(grace - waited, "account_unknown", PostPatch(awaiting_token_version=-1))
        if account.ciphertext is None:
            raise Deferred(self.settings.token_wait_s, "no_token", PostPatch(awaiting_token_version=-1))
        if account.expires_at is not None and account.expires_at <= now():
            await self.repo.request_refresh(row.account_id, account.token_version, "access_token_expired")
            raise Deferred(
                self.settings.token_wait_s,
                "token_expired",
                PostPatch(awaiting_token_version=account.token_version),
            )
        try:
            token = self.cipher.decrypt(
                account.ciphertext,
                account_id=row.account_id,
                purpose=transport_purpose(account.token_version),
            )
        except DecryptionFailed as exc:
            log.warning("token_decryption_failed", error=str(exc))
            # E.g. sealed before versions were bound into it (an upgrade): a new token replaces it.
            await self.repo.request_refresh(row.account_id, account.token_version, "token_undecryptable")
            raise Deferred(
                self.settings.token_wait_s,
                "token_undecryptable",
                PostPatch(awaiting_token_version=account.token_version),
            ) from exc
        return token, account.token_version

    async def slot(self, row: PostRow, endpoint: Endpoint) -> None:
        while True:
            wait = await self.repo.acquire_slot(row.account_id, endpoint)
            if wait <= 0:
                return
            self.metrics.rate_waits.labels(endpoint.value).inc()
            if wait > SHORT_WAIT_S:
                raise Deferred(wait, f"rate_window_{endpoint.value}")
            await self.renew_for(row, wait)
            if await sleep_or_stop(self.stopping, wait):
                raise Deferred(wait, f"rate_window_{endpoint.value}")

    async def call(self, row: PostRow, endpoint: Endpoint, call: Callable[[str], Awaitable[T]]) -> T:
        """One rate-limited TikTok call with the account's token; TikTok's verdict as Deferred/Failed."""
        token, version = await self.token(row)
        await self.slot(row, endpoint)
        try:
            return await call(token)
        except TikTokError as exc:
            self.metrics.tiktok_errors.labels(exc.endpoint, exc.label).inc()
            log.warning(
                "tiktok_error",
                endpoint=exc.endpoint,
                error_code=exc.label,
                log_id=exc.log_id,
                http=exc.status,
            )
            decision = decisions.on_tiktok_error(exc, row.failures, cap_retry_s=self.settings.cap_retry_s)
            match decision:
                case decisions.Refresh(reason=reason):
                    await self.repo.request_refresh(row.account_id, version, reason)
                    raise Deferred(
                        self.settings.token_wait_s, "token_invalid", PostPatch(awaiting_token_version=version)
                    ) from exc
                case decisions.Defer():
                    raise Deferred.of(decision) from exc
                case decisions.Fail(error=error):
                    raise Failed(error) from exc

    async def fetch_status(self, row: PostRow) -> PublishStatus:
        """Status fetch of the post's publish_id (rate-limited, with the account's token)."""
        assert row.publish_id is not None  # noqa: S101
        publish_id = row.publish_id

        async def fetch(token: str) -> PublishStatus:
            return await self.tiktok.fetch_status(token, publish_id)

        return await self.call(row, Endpoint.status, fetch)
