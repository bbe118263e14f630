"""Payloads of ``tiktok.accounts`` (the four account events), ``tiktok.access-tokens`` and
``tiktok.token.refresh-requested``."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from common.event_fields import Timestamp, Version
from common.event_posts import Frozen


class AccountStatus(StrEnum):
    """connected: posts can go; reauth_required: the creator must connect again; disconnected: gone;
    revoked: gone because the creator removed the app's access in TikTok (``authorization.removed``).
    revoke_pending: disconnected here, the grant's revocation at TikTok is still being retried (the
    account events say disconnected; only auth_service's API shows this state)."""

    connected = "connected"
    reauth_required = "reauth_required"
    disconnected = "disconnected"
    revoked = "revoked"
    revoke_pending = "revoke_pending"


AUTHORIZATION_REMOVED = "authorization_removed"
"""The ``reason`` of a refresh request that relays TikTok's ``authorization.removed`` webhook from
publish_service (which receives the app's webhooks) to auth_service: the grant is gone, so auth_service
forgets the account (status ``revoked``) instead of refreshing it."""


_ACCOUNT_EXAMPLE: JsonDict = {
    "account_id": "acc-1",
    "open_id": "_000Hx4ZqQ",
    "status": "connected",
    "scopes": ["user.info.basic", "video.publish", "video.upload"],
    "display_name": "Hill Walks",
    "access_expires_at": "2026-11-23T10:00:00Z",
    "refresh_expires_at": "2027-11-22T10:00:00Z",
    "token_version": 1,
    "reason": None,
}


class AccountData(Frozen):
    """The public state of an account; the compacted topic keeps the latest per account."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ACCOUNT_EXAMPLE]})

    account_id: str = Field(description="auth_service's id of the account (the Kafka key).")
    open_id: str = Field(description="TikTok's id of the creator for this app.")
    status: AccountStatus = Field(description="The account's state after this event.")
    scopes: list[str] = Field(default_factory=list, description="The scopes the creator granted.")
    display_name: str | None = Field(default=None, description="The creator's display name, if known.")
    access_expires_at: Timestamp | None = Field(default=None, description="When the access token expires.")
    refresh_expires_at: Timestamp | None = Field(default=None, description="When the refresh token expires.")
    token_version: Version = Field(default=0, description="Increases with every new access token.")
    reason: str | None = Field(default=None, description="Why the account needs reauth or was disconnected.")


_TOKEN_EXAMPLE: JsonDict = {
    "account_id": "acc-1",
    "open_id": "_000Hx4ZqQ",
    "scopes": ["video.publish"],
    "token_version": 3,
    "expires_at": "2026-11-23T10:00:00Z",
    "ciphertext": "v1.t1.q83vEjRWeJA",
}


class AccessTokenData(Frozen):
    """The current access token of an account, encrypted with the transport key (never plain)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_TOKEN_EXAMPLE]})

    account_id: str = Field(description="auth_service's id of the account (the Kafka key).")
    open_id: str = Field(description="TikTok's id of the creator for this app.")
    scopes: list[str] = Field(description="The scopes this token carries.")
    token_version: Version = Field(description="Newer tokens have higher versions; keep the highest.")
    expires_at: Timestamp = Field(description="When this access token expires.")
    ciphertext: str = Field(
        description="The token, AES-256-GCM under the transport key (v1.<key id>.<base64url>); the "
        "account id and purpose are its associated data."
    )


class RefreshRequestedData(Frozen):
    """publish_service saw ``access_token_invalid`` on ``seen_token_version``; please refresh."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"account_id": "acc-1", "reason": "access_token_invalid", "seen_token_version": 3}]
        }
    )

    account_id: str = Field(description="The account whose token TikTok refused.")
    reason: str = Field(
        description="What TikTok said, e.g. access_token_invalid; authorization_removed relays TikTok's "
        "authorization.removed webhook: the account is forgotten (revoked), not refreshed."
    )
    seen_token_version: Version | None = Field(
        default=None, description="The token version that was refused; a newer one makes this a no-op."
    )
