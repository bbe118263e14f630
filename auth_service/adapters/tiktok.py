"""The TikTok port with metrics: every call counted by endpoint and result, and timed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from auth_service.metrics import Metrics
from common.tiktok.client import USER_FIELDS_BASIC, TikTokClient, TokenGrant
from common.tiktok.errors import TikTokError, TikTokTransportError

TOKEN = "/v2/oauth/token/"  # noqa: S105 - a path
REVOKE = "/v2/oauth/revoke/"
USER_INFO = "/v2/user/info/"


class InstrumentedTikTok:
    def __init__(self, client: TikTokClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    @asynccontextmanager
    async def _measured(self, endpoint: str) -> AsyncIterator[None]:
        started = time.perf_counter()
        result = "ok"
        try:
            yield
        except TikTokError as exc:
            result = exc.tiktok_code
            raise
        except TikTokTransportError:
            result = "unreachable"
            raise
        except TimeoutError:
            result = "timeout"
            raise
        finally:
            self._metrics.api_calls.labels(endpoint, result).inc()
            self._metrics.api_seconds.labels(endpoint).observe(time.perf_counter() - started)

    async def exchange_code(
        self, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenGrant:
        async with self._measured(TOKEN):
            return await self._client.exchange_code(code, redirect_uri, code_verifier)

    async def refresh(self, refresh_token: str) -> TokenGrant:
        async with self._measured(TOKEN):
            return await self._client.refresh(refresh_token)

    async def revoke(self, access_token: str) -> None:
        async with self._measured(REVOKE):
            await self._client.revoke(access_token)

    async def user_info(self, access_token: str, fields: Sequence[str] = USER_FIELDS_BASIC) -> dict[str, Any]:
        async with self._measured(USER_INFO):
            return await self._client.user_info(access_token, fields)
