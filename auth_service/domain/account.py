"""An account's lifecycle: connected ⇄ reauth_required, and disconnected (forgotten) at the end.

``token_version`` counts the token pairs an account has had. It goes up by one with every new pair
(connect, reconnect, refresh) and is carried on every access-token event, so a consumer can tell an
old token from a new one and a refresh request can say which version it saw.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from common.errors import Conflict
from common.events import AccountStatus

ACCOUNT_ID_PREFIX = "acc_"


def new_account_id() -> str:
    return ACCOUNT_ID_PREFIX + secrets.token_hex(12)


class InvalidTransition(Conflict):
    code = "invalid_transition"


_ALLOWED: dict[str, frozenset[AccountStatus]] = {
    # Connecting (or reconnecting the same TikTok user) is allowed from any state.
    "connect": frozenset(AccountStatus),
    "refresh": frozenset({AccountStatus.connected}),
    "require_reauth": frozenset({AccountStatus.connected}),
    "disconnect": frozenset(
        {AccountStatus.connected, AccountStatus.reauth_required, AccountStatus.revoke_pending}
    ),
}

_RESULT: dict[str, AccountStatus] = {
    "connect": AccountStatus.connected,
    "refresh": AccountStatus.connected,
    "require_reauth": AccountStatus.reauth_required,
    "disconnect": AccountStatus.disconnected,
}


def transition(current: AccountStatus | None, action: str) -> AccountStatus:
    """The status after ``action``; ``current`` is None for an account that doesn't exist yet."""
    if action not in _RESULT:
        raise ValueError(f"unknown action {action!r}")
    if current is None:
        if action != "connect":
            raise InvalidTransition(f"cannot {action} an account that does not exist")
        return _RESULT[action]
    if current not in _ALLOWED[action]:
        raise InvalidTransition(f"cannot {action.replace('_', ' ')} an account that is {current.value}")
    return _RESULT[action]


@dataclass(frozen=True)
class Account:
    """What we know about an account, without its tokens (those stay in the vault)."""

    id: str
    client_key: str
    open_id: str
    status: AccountStatus
    scopes: tuple[str, ...]
    display_name: str | None
    union_id: str | None
    avatar_url: str | None
    token_version: int
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    refresh_due_at: datetime | None
    last_refreshed_at: datetime | None
    refresh_failures: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
