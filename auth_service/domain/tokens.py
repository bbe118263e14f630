"""What a refresh works with: a claimed account, the new token pair, the profile TikTok returned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NewTokens:
    """A token pair to store, with the lifetimes TikTok gave it and when to refresh it."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int | None  # None: TikTok did not say (unknown, kept on a refresh)
    scopes: tuple[str, ...]
    refresh_in: float

    def __repr__(self) -> str:
        return f"NewTokens(expires_in={self.expires_in}, scopes={self.scopes})"


@dataclass(frozen=True)
class Profile:
    display_name: str | None = None
    union_id: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True)
class Claim:
    """An account this replica holds the refresh lease on."""

    account_id: str
    open_id: str
    token_version: int
    refresh_token: str
    refresh_expired: bool
    refresh_failures: int

    def __repr__(self) -> str:
        return f"Claim({self.account_id!r}, v{self.token_version})"
