"""Account management: read, check the token live at TikTok, disconnect (revoke and forget)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from auth_service.adapters.postgres import Repository
from auth_service.domain.account import Account, transition
from auth_service.handlers.ports import TikTokAuth
from common.errors import InvalidInput, NotFound, TransientError
from common.tiktok.errors import Action, TikTokError, TikTokTransportError

log = structlog.get_logger(__name__)


class AccountNotFound(NotFound):
    code = "account_not_found"


@dataclass(frozen=True)
class TokenStatus:
    account: Account
    valid: bool
    checked_at: datetime
    open_id_matches: bool | None
    error: str | None
    tiktok_log_id: str | None


@dataclass(frozen=True)
class Disconnected:
    account_id: str
    revoked: bool
    revoke_error: str | None


class Accounts:
    def __init__(self, repo: Repository, tiktok: TikTokAuth) -> None:
        self._repo = repo
        self._tiktok = tiktok

    async def list(self, *, status: str | None, after: str | None, limit: int) -> list[Account]:
        if after is not None and "\x00" in after:  # Postgres refuses NUL in text: say so, not 500
            raise InvalidInput("after must not contain a NUL character")
        return await self._repo.list_accounts(status=status, after=after, limit=limit)

    async def get(self, account_id: str) -> Account:
        # No stored id holds a NUL (Postgres text cannot), and the query would fail on it.
        account = None if "\x00" in account_id else await self._repo.get(account_id)
        if account is None:
            raise AccountNotFound(f"no account {account_id!r}")
        return account

    async def token_status(self, account_id: str) -> TokenStatus:
        """Ask TikTok whether the stored access token works (a user-info call for ``open_id``)."""
        account = await self.get(account_id)
        token = await self._repo.access_token(account_id)
        if token is None:
            raise AccountNotFound(f"no account {account_id!r}")
        checked_at = datetime.now(UTC)
        try:
            user = await self._tiktok.user_info(token, ("open_id",))
        except TikTokTransportError as exc:
            raise TransientError(f"TikTok did not answer: {exc.message}") from exc
        except TikTokError as exc:
            if exc.action is Action.retry:
                raise TransientError(f"TikTok could not check the token now: {exc.tiktok_code}") from exc
            return TokenStatus(account, False, checked_at, None, exc.tiktok_code, exc.log_id)
        open_id = user.get("open_id")
        return TokenStatus(
            account, True, checked_at, (open_id == account.open_id) if open_id else None, None, None
        )

    async def disconnect(self, account_id: str, correlation_id: str | None = None) -> Disconnected:
        """Revoke the grant at TikTok, then delete the account and announce it.

        A revoke TikTok could not be asked (network, 5xx) fails the request with nothing deleted, so
        the operator can retry; a revoke TikTok refuses (the token already dead) still forgets the
        account: there is no grant left to protect.
        """
        account = await self.get(account_id)
        transition(account.status, "disconnect")
        token = await self._repo.access_token(account_id)
        revoked, revoke_error = False, None
        if token is not None:
            try:
                await self._tiktok.revoke(token)
                revoked = True
            except TikTokTransportError as exc:
                raise TransientError(f"TikTok did not answer the revoke: {exc.message}") from exc
            except TikTokError as exc:
                # Only a passing failure (5xx, 429) is worth a retry; a dead token has nothing to revoke.
                if exc.action is Action.retry:
                    raise TransientError(f"TikTok could not revoke now: {exc.tiktok_code}") from exc
                revoke_error = exc.tiktok_code
        async with self._repo.transaction(correlation_id) as tx:
            current = await tx.lock(account_id)
            if current is None:
                raise AccountNotFound(f"no account {account_id!r}")
            await tx.delete(account_id)
            await tx.emit_disconnected(current, reason="revoked" if revoked else f"forgotten:{revoke_error}")
            await tx.emit_access_token_tombstone(account_id)
        log.info("account_disconnected", account_id=account_id, revoked=revoked, revoke_error=revoke_error)
        return Disconnected(account_id, revoked, revoke_error)
