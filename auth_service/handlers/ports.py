"""The ports handlers depend on (Protocols), so a handler's contract is visible in its signature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from common.tiktok.client import TokenGrant


class TikTokAuth(Protocol):
    """The part of common.tiktok.TikTokClient auth_service uses."""

    async def exchange_code(
        self, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant: ...

    async def refresh(self, refresh_token: str) -> TokenGrant: ...

    async def revoke(self, access_token: str) -> None: ...

    async def user_info(self, access_token: str, fields: Sequence[str] = ...) -> dict[str, Any]: ...
