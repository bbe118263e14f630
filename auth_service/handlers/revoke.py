"""Revoking a creator's grant at TikTok when an account is disconnected (#12.16).

A revoke needs a live access token. When the stored one has expired (or TikTok refuses it), the
refresh token buys a new one first, then the revoke is made with it. When TikTok cannot be made to
revoke now (network, 5xx, 429, or a refusal after a fresh token), the account stays as
``revoke_pending`` (already announced as disconnected, its token tombstoned) and a background loop
retries with backoff. Only two answers end it: the revoke succeeded, or the refresh token is dead
(``invalid_grant``: there is no grant left to revoke).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

import structlog

from auth_service.adapters.postgres import NewTokens, Repository
from auth_service.adapters.postgres.revocations import GrantTokens
from auth_service.handlers.ports import TikTokAuth
from common.backoff import Backoff
from common.tasks import sleep_or_stop
from common.tiktok.errors import Action, TikTokError, TikTokTransportError

log = structlog.get_logger(__name__)


class Verdict(StrEnum):
    revoked = "revoked"
    dead = "dead"
    """The grant no longer exists at TikTok (refresh answered invalid_grant): nothing to revoke."""
    pending = "pending"


@dataclass(frozen=True)
class RevokeOutcome:
    verdict: Verdict
    error: str | None = None
    refreshed: NewTokens | None = None
    """The pair a refresh gave on the way (stored when the revoke stays pending)."""


class _Stop(Exception):
    def __init__(self, outcome: RevokeOutcome) -> None:
        self.outcome = outcome


class GrantRevoker:
    def __init__(self, tiktok: TikTokAuth) -> None:
        self._tiktok = tiktok

    async def revoke(self, tokens: GrantTokens) -> RevokeOutcome:
        refreshed: NewTokens | None = None
        try:
            access = tokens.access_token
            if tokens.access_expired:
                refreshed = await self._refresh(tokens.refresh_token)
                access = refreshed.access_token
            error = await self._revoke(access, refreshed)
            if error is not None and refreshed is None:
                # TikTok refused a token our clock thought alive (expired early, or reset): refresh, retry.
                refreshed = await self._refresh(tokens.refresh_token)
                error = await self._revoke(refreshed.access_token, refreshed)
        except _Stop as stop:
            return stop.outcome
        if error is None:
            return RevokeOutcome(Verdict.revoked, refreshed=refreshed)
        return RevokeOutcome(Verdict.pending, f"revoke:{error}", refreshed)

    async def _refresh(self, refresh_token: str) -> NewTokens:
        try:
            grant = await self._tiktok.refresh(refresh_token)
        except TikTokTransportError as exc:
            raise _Stop(RevokeOutcome(Verdict.pending, f"refresh:{exc.code}")) from exc
        except TikTokError as exc:
            if exc.action is Action.retry:
                raise _Stop(RevokeOutcome(Verdict.pending, f"refresh:{exc.tiktok_code}")) from exc
            # invalid_grant and the like: the grant is gone at TikTok; nothing is left to revoke.
            raise _Stop(RevokeOutcome(Verdict.dead, f"refresh:{exc.tiktok_code}")) from exc
        return NewTokens(
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_in=grant.expires_in,
            refresh_expires_in=grant.refresh_expires_in,
            scopes=grant.scopes,
            refresh_in=0.0,
        )

    async def _revoke(self, access_token: str, refreshed: NewTokens | None) -> str | None:
        """None when revoked; the refusal's code when TikTok refused it for a reason a retry may fix."""
        try:
            await self._tiktok.revoke(access_token)
        except TikTokTransportError as exc:
            raise _Stop(RevokeOutcome(Verdict.pending, f"revoke:{exc.code}", refreshed)) from exc
        except TikTokError as exc:
            if exc.action is Action.retry:
                raise _Stop(RevokeOutcome(Verdict.pending, f"revoke:{exc.tiktok_code}", refreshed)) from exc
            return exc.tiktok_code
        return None


class RevokeRetries:
    """The background loop: retry ``revoke_pending`` accounts until revoked or dead."""

    def __init__(
        self,
        repo: Repository,
        finish: Finisher,
        *,
        poll_interval_s: float = 5.0,
        lease_s: float = 60.0,
    ) -> None:
        self._repo = repo
        self._finish = finish
        self._poll_s = poll_interval_s
        self._lease_s = lease_s

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            for account_id in await self._repo.claim_revoke_due(10, self._lease_s):
                await self._finish(account_id)
            if await sleep_or_stop(stopping, self._poll_s):
                return


class Finisher:
    """One revoke attempt for an account and what follows: forget it, or keep it pending."""

    def __init__(self, repo: Repository, revoker: GrantRevoker, backoff: Backoff) -> None:
        self._repo = repo
        self._revoker = revoker
        self._backoff = backoff

    async def __call__(self, account_id: str, correlation_id: str | None = None) -> RevokeOutcome | None:
        tokens = await self._repo.grant_tokens(account_id)
        if tokens is None:
            return None
        outcome = await self._revoker.revoke(tokens)
        async with self._repo.transaction(correlation_id) as tx:
            current = await tx.lock(account_id)
            if current is None or current.token_version != tokens.token_version:
                # Reconnected (or gone) meanwhile: the new grant is not ours to revoke.
                return None
            if outcome.verdict is Verdict.pending:
                attempts = await tx.revoke_attempts(account_id)
                delay = self._backoff.delay(attempts)
                assert outcome.error is not None  # noqa: S101 - a pending outcome names its reason
                account = await tx.mark_revoke_pending(account_id, outcome.error, delay, outcome.refreshed)
                if current.status.value != "revoke_pending" and account is not None:
                    await tx.emit_disconnected(account, reason="revoke_pending")
                    await tx.emit_access_token_tombstone(account_id)
                log.warning(
                    "revoke_pending", account_id=account_id, error_code=outcome.error, retry_in_s=delay
                )
                return outcome
            await tx.delete(account_id)
            if current.status.value != "revoke_pending":
                reason = "revoked" if outcome.verdict is Verdict.revoked else f"forgotten:{outcome.error}"
                await tx.emit_disconnected(current, reason=reason)
                await tx.emit_access_token_tombstone(account_id)
        log.info(
            "account_disconnected", account_id=account_id, outcome=outcome.verdict.value, error=outcome.error
        )
        return outcome
