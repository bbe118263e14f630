"""Account management: read, check the token live at TikTok, disconnect (revoke and forget)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from auth_service.adapters.postgres import Repository
from auth_service.domain.account import Account, transition
from auth_service.handlers.ports import TikTokAuth
from auth_service.handlers.revoke import Finisher, Verdict
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
    revoke_pending: bool = False


class Accounts:
    def __init__(self, repo: Repository, tiktok: TikTokAuth, finish: Finisher) -> None:
        self._repo = repo
        self._tiktok = tiktok
        self._finish = finish

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
        """Revoke the grant at TikTok (refreshing first when the access token is dead), then forget
        the account and announce it; when TikTok cannot be made to revoke now, the account stays as
        ``revoke_pending`` (announced as disconnected, token tombstoned) and is retried (#12.16)."""
        account = await self.get(account_id)
        transition(account.status, "disconnect")
        outcome = await self._finish(account_id, correlation_id)
        if outcome is None:
            raise AccountNotFound(f"no account {account_id!r}")
        pending = outcome.verdict is Verdict.pending
        return Disconnected(account_id, outcome.verdict is Verdict.revoked, outcome.error, pending)
