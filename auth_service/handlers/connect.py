"""Connecting an account: start TikTok's OAuth flow, then complete it on the callback."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import structlog

from auth_service.adapters.postgres import NewTokens, Profile, Repository
from auth_service.domain.account import new_account_id
from auth_service.domain.oauth_state import (
    STATE_TTL,
    AuthorizationDenied,
    ConnectRefused,
    StateMissing,
    check_state,
    digest,
    new_secret_value,
)
from auth_service.domain.schedule import RefreshPolicy
from auth_service.domain.scopes import PublishMode, publish_mode
from auth_service.handlers.ports import TikTokAuth
from auth_service.metrics import Metrics
from common.events import EventType
from common.tiktok.client import TokenGrant, build_authorize_url
from common.tiktok.errors import TikTokError, TikTokTransportError
from common.tiktok.pkce import code_challenge, make_code_verifier

log = structlog.get_logger(__name__)

USER_FIELDS = ("open_id", "union_id", "avatar_url", "display_name")


class TikTokRefusedCode(ConnectRefused):
    code = "code_exchange_failed"
    http_status = 502
    title = "TikTok did not accept the sign-in"


class TikTokUnavailable(ConnectRefused):
    code = "tiktok_unavailable"
    http_status = 503
    retriable = True
    title = "TikTok could not be reached"


class ConnectBusy(ConnectRefused):
    code = "connect_busy"
    http_status = 503
    retriable = True
    title = "Too many sign-ins are in progress"


class ConnectConflict(ConnectRefused):
    code = "connect_conflict"
    http_status = 409
    title = "The account changed while it was being connected"


@dataclass(frozen=True)
class ConnectStart:
    authorize_url: str
    browser_nonce: str

    def __repr__(self) -> str:
        return "ConnectStart(...)"


@dataclass(frozen=True)
class Connected:
    account_id: str
    mode: PublishMode


@dataclass(frozen=True)
class ConnectConfig:
    client_key: str
    authorize_url: str
    redirect_uri: str
    scopes: tuple[str, ...]
    pkce: bool
    max_live_states: int = 10_000


class ConnectFlow:
    def __init__(
        self,
        repo: Repository,
        tiktok: TikTokAuth,
        config: ConnectConfig,
        policy: RefreshPolicy,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self._repo = repo
        self._tiktok = tiktok
        self._config = config
        self._policy = policy
        self._metrics = metrics
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    async def start(self) -> ConnectStart:
        """A new single-use state, bound to a new browser nonce (never one the browser offers: #12.12)."""
        nonce = new_secret_value()
        state = new_secret_value()
        verifier = make_code_verifier() if self._config.pkce else None
        ttl_s, cap = STATE_TTL.total_seconds(), self._config.max_live_states
        async with self._repo.transaction() as tx:
            # The table stays bounded whatever arrives (#12.11); the per-address limit is at the edge.
            if await tx.live_states(ttl_s, cap) >= cap:
                self._metrics.connects.labels(ConnectBusy.code).inc()
                raise ConnectBusy(f"{cap} sign-ins are already in progress; try again in a few minutes")
            await tx.save_state(digest(state), digest(nonce), verifier, ttl_s)
        url = build_authorize_url(
            self._config.authorize_url,
            client_key=self._config.client_key,
            scopes=self._config.scopes,
            redirect_uri=self._config.redirect_uri,
            state=state,
            code_challenge=code_challenge(verifier) if verifier is not None else None,
        )
        log.info("connect_started", pkce=verifier is not None)
        return ConnectStart(authorize_url=url, browser_nonce=nonce)

    async def complete(
        self,
        *,
        state: str | None,
        browser_nonce: str | None,
        code: str | None,
        error: str | None,
        error_description: str | None,
        correlation_id: str | None = None,
    ) -> Connected:
        """Check the state, exchange the code, store the account; return it or raise ConnectRefused."""
        try:
            connected = await self._complete(
                state, browser_nonce, code, error, error_description, correlation_id
            )
        except ConnectRefused as exc:
            self._metrics.connects.labels(exc.code).inc()
            log.warning("connect_refused", error_code=exc.code, reason=exc.message)
            raise
        self._metrics.connects.labels("connected").inc()
        return connected

    async def _complete(
        self,
        state: str | None,
        browser_nonce: str | None,
        code: str | None,
        error: str | None,
        error_description: str | None,
        correlation_id: str | None,
    ) -> Connected:
        if not state:
            raise StateMissing("the callback carries no state parameter")
        # The state is consumed first, in its own transaction: whatever follows, it can't be reused.
        async with self._repo.transaction() as tx:
            record = await tx.consume_state(digest(state))
            now = await tx.now()
            record = check_state(record, now=now, browser_nonce=browser_nonce)
            verifier = tx.open_code_verifier(record)
        if error:
            if error == "access_denied":
                raise AuthorizationDenied("the TikTok user did not authorize the app")
            raise ConnectRefused(f"TikTok answered {error}: {error_description or 'no description'}")
        if not code:
            raise ConnectRefused("the callback carries neither a code nor an error")

        grant, mode = await self._exchange(code, verifier)

        profile = Profile()
        if "user.info.basic" in grant.scopes:
            try:
                user = await self._tiktok.user_info(grant.access_token, USER_FIELDS)
            except (TikTokError, TikTokTransportError) as exc:
                # The account works without a display name; connecting must not fail on it.
                log.warning("user_info_failed", error_code=exc.code, open_id=grant.open_id)
            else:
                profile = Profile(
                    display_name=_str(user.get("display_name")),
                    union_id=_str(user.get("union_id")),
                    avatar_url=_str(user.get("avatar_url")),
                )

        tokens = NewTokens(
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_in=grant.expires_in,
            refresh_expires_in=grant.refresh_expires_in,
            scopes=grant.scopes,
            refresh_in=self._policy.delay(grant.expires_in, self._rng),
        )
        client_key = self._config.client_key
        async with self._repo.transaction(correlation_id) as tx:
            existing = await tx.lock_by_open_id(client_key, grant.open_id)
            if existing is None:
                account = await tx.insert_connected(
                    new_account_id(), client_key, grant.open_id, tokens, profile
                )
                if account is None:  # the same user finished a second callback a moment earlier
                    existing = await tx.lock_by_open_id(client_key, grant.open_id)
            if existing is not None:
                account = await tx.reconnect(existing.id, tokens, profile)
            if account is None:
                raise ConnectConflict("the account was removed while it was being stored; connect again")
            await tx.emit_account(EventType.account_connected, account)
            await tx.emit_access_token(account, grant.access_token)
        log.info(
            "account_connected",
            account_id=account.id,
            token_version=account.token_version,
            reconnected=existing is not None,
            scopes=list(grant.scopes),
            mode=mode.value,
        )
        return Connected(account.id, mode)


    async def _exchange(self, code: str, verifier: str | None) -> tuple[TokenGrant, PublishMode]:
        """The code for a grant that names its creator and allows posting, or ConnectRefused."""
        try:
            grant = await self._tiktok.exchange_code(code, self._config.redirect_uri, verifier)
        except TikTokTransportError as exc:
            raise TikTokUnavailable(f"TikTok's token endpoint did not answer: {exc.message}") from exc
        except TikTokError as exc:
            raise TikTokRefusedCode(f"TikTok refused the code: {exc.tiktok_code}") from exc
        if not grant.open_id:
            # Without it two creators would share one row (stored as "" or "None"): refuse (#12.14).
            raise TikTokRefusedCode("TikTok's token answer names no open_id, so the creator is unknown")
        try:
            return grant, publish_mode(grant.scopes, self._config.scopes)  # ScopeMissing names it
        except ConnectRefused:
            # Nothing is stored, so leave no live grant behind at TikTok either (best effort).
            with contextlib.suppress(TikTokError, TikTokTransportError):
                await self._tiktok.revoke(grant.access_token)
            raise


def _str(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
