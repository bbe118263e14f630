"""Refreshing tokens before they expire, at most one refresh per account at a time across replicas.

Why a lease and not a row lock held across the call: a replica claims due accounts with
``FOR UPDATE SKIP LOCKED`` in a short statement that writes ``lease_owner``/``lease_until`` and commits
at once. The TikTok call then runs with no transaction open, and the result is stored in a second
short transaction. Holding the row lock across the call instead would pin one pooled connection and
one open transaction per refresh in flight (with 20 concurrent refreshes per replica, 20 connections
"idle in transaction" for as long as TikTok takes, blocking vacuum and making a slow TikTok exhaust
the pool that the HTTP API also needs). The lease is what makes the lease safe:

- it lasts longer than the single TikTok call made under it (``lease_s >= 2 * call_timeout_s`` is
  enforced by the settings, and the call is cut at ``call_timeout_s``), so no other replica can claim
  the account while the refresh token is being spent;
- a replica that dies mid-call leaves a lease that simply runs out, and another replica refreshes;
- the result is stored conditioned on the ``token_version`` that was claimed, not on the lease, so
  even a lease that ran out never lets an older token pair overwrite a newer one, and an
  ``invalid_grant`` caused by someone else's newer refresh is recognised as stale and ignored rather
  than marking the account ``reauth_required``.

Retries: each claim makes one TikTok call. A transient failure (network, timeout, 5xx, 429) gives the
lease back with ``refresh_due_at`` moved out by an exponential backoff with jitter, so retries survive
restarts and any replica may make them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass

import structlog

from auth_service.adapters.postgres import Repository
from auth_service.domain.schedule import RefreshPolicy
from auth_service.domain.tokens import Claim, NewTokens
from auth_service.handlers.ports import TikTokAuth
from auth_service.metrics import Metrics
from common.backoff import Backoff
from common.db import REFUSED_VALUE
from common.errors import is_retriable
from common.events import AUTHORIZATION_REMOVED, AccountStatus, Envelope, EventType, RefreshRequestedData
from common.kafka import Decoded
from common.tasks import sleep_or_stop, wait_or_stop
from common.tiktok.errors import TikTokError, TikTokTransportError
from common.tracing import tracer

log = structlog.get_logger(__name__)

# The longest pause between tries to store a refreshed token pair while PostgreSQL is away.
COMMIT_RETRY_MAX_S = 2.0

# Codes for which retrying the same refresh token can't help: the grant is gone.
_REAUTH_CODES = frozenset({"invalid_grant"})


@dataclass(frozen=True)
class RefreshConfig:
    owner: str
    concurrency: int
    call_timeout_s: float
    lease_s: float
    poll_interval_s: float
    request_min_interval_s: float
    commit_attempts: int = 5
    """At least this many tries to store a refreshed token pair; more while the lease lasts."""


class Refresher:
    def __init__(
        self,
        repo: Repository,
        tiktok: TikTokAuth,
        config: RefreshConfig,
        policy: RefreshPolicy,
        backoff: Backoff,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self._repo = repo
        self._tiktok = tiktok
        self._config = config
        self._policy = policy
        self._backoff = backoff
        self._metrics = metrics
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._min_claim = max(1, config.concurrency // 4)

    # ---------------------------------------------------------------- the loop

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim due accounts while there are free slots; each claim is refreshed in its own task.

        Only as many accounts are claimed as can start at once, so every lease starts ticking when
        its call starts. On ``stopping`` no new claims are made and the calls in flight finish.
        """
        free = asyncio.Event()
        in_flight = 0

        def done(_task: object) -> None:
            nonlocal in_flight
            in_flight -= 1
            free.set()

        async with asyncio.TaskGroup() as group:
            while not stopping.is_set():
                free.clear()  # before claiming, so a slot freed meanwhile still wakes the wait below
                room = self._config.concurrency - in_flight
                claims: list[Claim] = []
                # Claim in batches (a quarter of the slots at least) rather than one query per freed
                # slot: under load that's 4-10x fewer claim queries for a few slots idle meanwhile.
                if room > 0 and (room >= self._min_claim or in_flight == 0):
                    try:
                        claims = await self._repo.claim_due(self._config.owner, room, self._config.lease_s)
                    except Exception as exc:
                        if not is_retriable(exc):
                            raise
                        log.warning("refresh_claim_failed", error=f"{type(exc).__name__}: {exc}")
                for claim in claims:
                    in_flight += 1
                    task = group.create_task(self._guarded(claim), name=f"refresh:{claim.account_id}")
                    task.add_done_callback(done)
                if claims and len(claims) == room:
                    continue  # there may be more due right now
                await wait_or_stop(free, stopping, self._config.poll_interval_s)

    async def _guarded(self, claim: Claim) -> None:
        # One account's unexpected failure must not cancel the other refreshes in flight (their
        # refresh tokens may already be spent at TikTok); its lease runs out and it is retried.
        try:
            await self.refresh(claim)
        except Exception:
            log.exception("refresh_crashed", account_id=claim.account_id)

    # ---------------------------------------------------------------- on demand

    async def handle_request(self, message: Decoded[Envelope[RefreshRequestedData]]) -> None:
        """The consume loop's handler for ``tiktok.token.refresh-requested``.

        A retriable failure (database away) propagates, so the loop retries the same record; any
        other failure is a bug on this one record, logged, and must not stall the partition behind it.
        """
        envelope = message.event
        with structlog.contextvars.bound_contextvars(
            correlation_id=envelope.correlation_id, account_id=envelope.data.account_id
        ):
            try:
                await self.on_requested(envelope.data, envelope.correlation_id)
            except REFUSED_VALUE as exc:
                # The database refuses a value in this record: it will every time, so it is skipped
                # (counted and logged), never retried, and the records behind it go on.
                self._metrics.shared.state_event_bad.labels(message.record.topic, "refused_by_database").inc()
                log.warning(
                    "state_event_bad",
                    topic=message.record.topic,
                    partition=message.record.partition,
                    offset=message.record.offset,
                    error_code="refused_by_database",
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
            except Exception as exc:
                if is_retriable(exc):
                    raise
                log.exception("refresh_request_crashed", offset=message.record.offset)

    async def on_requested(self, data: RefreshRequestedData, correlation_id: str | None = None) -> str:
        """Handle ``tiktok.token.refresh-requested``; return what was done (for metrics and tests)."""
        if data.reason == AUTHORIZATION_REMOVED:
            return await self.forget_removed(data.account_id, correlation_id)
        claim = await self._repo.claim_requested(
            data.account_id,
            self._config.owner,
            self._config.lease_s,
            data.seen_token_version,
            self._config.request_min_interval_s,
        )
        if claim is None:
            self._metrics.refresh_requests.labels("skipped").inc()
            log.info(
                "refresh_request_skipped",
                account_id=data.account_id,
                seen_token_version=data.seen_token_version,
                reason=data.reason,
            )
            return "skipped"
        outcome = await self.refresh(claim, correlation_id=correlation_id)
        self._metrics.refresh_requests.labels("refreshed").inc()
        return outcome

    async def forget_removed(self, account_id: str, correlation_id: str | None = None) -> str:
        """The creator removed the app's access in TikTok (``authorization.removed``, relayed by
        publish_service): the grant is gone, so there is nothing to refresh or revoke. The account is
        forgotten, announced as ``revoked`` and its access token tombstoned, so posts for it fail with
        ``account_revoked`` without calling TikTok."""
        async with self._repo.transaction(correlation_id) as tx:
            current = await tx.lock(account_id)
            if current is None:
                self._metrics.refresh_requests.labels("skipped").inc()
                return "unknown_account"
            await tx.delete(account_id)
            revoked = dataclasses.replace(current, status=AccountStatus.revoked)
            await tx.emit_account(EventType.account_disconnected, revoked, reason=AUTHORIZATION_REMOVED)
            await tx.emit_access_token_tombstone(account_id)
        self._metrics.refresh_requests.labels("revoked").inc()
        log.info("account_authorization_removed", account_id=account_id)
        return "revoked"

    # ---------------------------------------------------------------- one refresh

    async def refresh(self, claim: Claim, *, correlation_id: str | None = None) -> str:
        """Refresh one claimed account; return the outcome (ok, retry, reauth_required, stale)."""
        started = time.perf_counter()
        # Its own trace when the schedule asks; a child of the post's when publish_service asked
        # (the consume loop continues the request record's trace).
        attributes = {"account.id": claim.account_id}
        span = tracer(__name__).start_as_current_span("refresh token", attributes=attributes)
        with span as current, structlog.contextvars.bound_contextvars(account_id=claim.account_id):
            outcome = await self._refresh(claim, correlation_id)
            current.set_attribute("refresh.outcome", outcome)
        self._metrics.refresh_seconds.observe(time.perf_counter() - started)
        self._metrics.refreshes.labels(outcome).inc()
        return outcome

    async def _refresh(self, claim: Claim, correlation_id: str | None) -> str:
        if claim.refresh_expired:
            return await self._require_reauth(claim, "refresh_token_expired", correlation_id)
        call_started = time.monotonic()
        try:
            async with asyncio.timeout(self._config.call_timeout_s):
                grant = await self._tiktok.refresh(claim.refresh_token)
        except TimeoutError:
            return await self._retry(claim, "timeout")
        except TikTokTransportError as exc:
            return await self._retry(claim, exc.code)
        except TikTokError as exc:
            if exc.tiktok_code in _REAUTH_CODES:
                return await self._require_reauth(claim, exc.tiktok_code, correlation_id)
            # 5xx, 429, server_error… and also codes like invalid_client: a configuration mistake
            # must not turn every account into reauth_required; keep trying with a growing delay.
            if not exc.retriable:
                log.error("refresh_refused", error_code=exc.tiktok_code, log_id=exc.log_id)  # noqa: TRY400
            return await self._retry(claim, exc.tiktok_code)

        tokens = NewTokens(
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_in=grant.expires_in,
            refresh_expires_in=grant.refresh_expires_in,
            scopes=grant.scopes,
            refresh_in=self._policy.delay(grant.expires_in, self._rng),
        )
        # TikTok has rotated the refresh token: losing this commit would lose the account, so a
        # database outage is retried with the result kept in memory for as long as the lease keeps
        # other replicas off the account (a Postgres restart or failover outlasts a few quick tries).
        commit_until = call_started + self._config.lease_s - self._config.call_timeout_s
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._repo.transaction(correlation_id) as tx:
                    account = await tx.store_refresh(claim, tokens)
                    if account is None:
                        log.info("refresh_stale", token_version=claim.token_version)
                        return "stale"
                    await tx.emit_refreshed(account, grant.access_token)
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                left = commit_until - time.monotonic()
                if attempt >= self._config.commit_attempts and left <= 0:
                    log.exception("refresh_commit_failed", error=f"{type(exc).__name__}: {exc}")
                    raise
                pause = min(self._backoff.delay(attempt, self._rng) / 4, COMMIT_RETRY_MAX_S)
                log.warning("refresh_commit_retrying", attempt=attempt, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(min(pause, left) if left > 0 else pause)
            else:
                log.info(
                    "token_refreshed",
                    token_version=account.token_version,
                    expires_in=grant.expires_in,
                    next_refresh_in=round(tokens.refresh_in),
                )
                return "ok"

    async def _retry(self, claim: Claim, error: str) -> str:
        delay = self._backoff.delay(claim.refresh_failures + 1, self._rng)
        log.warning(
            "refresh_failed_will_retry",
            error=error,
            attempt=claim.refresh_failures + 1,
            retry_in=round(delay, 1),
        )
        await self._repo.release_for_retry(claim, self._config.owner, delay, error)
        return "retry"

    async def _require_reauth(self, claim: Claim, reason: str, correlation_id: str | None) -> str:
        async with self._repo.transaction(correlation_id) as tx:
            account = await tx.require_reauth(claim, reason)
            if account is None:
                # Someone stored a newer token pair meanwhile; this refresh token was simply old.
                log.info("refresh_stale", token_version=claim.token_version, error=reason)
                await self._repo.release(claim, self._config.owner)
                return "stale"
            await tx.emit_account(EventType.account_reauth_required, account, reason=reason)
        log.warning("account_reauth_required", reason=reason)
        return "reauth_required"


class Housekeeping:
    """Drops OAuth states an hour after they were created (useless after 10 minutes), every 10 minutes:
    with the cap on live states the table stays bounded (#12.11)."""

    def __init__(self, repo: Repository, *, every_s: float = 600.0, keep_s: float = 3600.0) -> None:
        self._repo = repo
        self._every_s = every_s
        self._keep_s = keep_s

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                removed = await self._repo.delete_old_states(self._keep_s)
                if removed:
                    log.info("oauth_states_removed", count=removed)
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                log.warning("housekeeping_failed", error=f"{type(exc).__name__}: {exc}")
            if await sleep_or_stop(stopping, self._every_s):
                return
