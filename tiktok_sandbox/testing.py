"""Run the real sandbox in-process for tests, plus a typed client for its control API.

    async with run_sandbox(SandboxConfig(...)) as sb:
        app = await sb.control.create_app(redirect_uris=["https://app.example/cb"])
        await sb.control.create_creator("alice", private=True)
        tok = await sb.control.issue_token(app.client_key, "alice", ["video.publish", "video.upload"])
        ...  # talk to sb.base_url with any HTTP client
        assert (await sb.control.call_counts())["rate_limited_total"] == 0

Pytest: the `sandbox` fixture (function scope, fresh state each test) and `sandbox_config`
(override it in a test module to change knobs). Load with `pytest_plugins = ["tiktok_sandbox.testing"]`
in the root conftest, or import both names into a conftest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .app import create_app
from .config import SandboxConfig
from .keys import CLOCK, STORE
from .store import Store


class ControlAPIError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"sandbox control API answered {status}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class SandboxApp:
    client_key: str
    client_secret: str = dataclasses.field(repr=False)
    app_type: str
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    raw: dict[str, Any] = dataclasses.field(repr=False)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)
    open_id: str
    scope: str
    expires_in: int
    refresh_expires_in: int | None  # None when the token_includes_refresh_expires_in knob is off

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class SandboxControl:
    """Typed helpers over `/_sandbox/...`. Every method raises `ControlAPIError` on a non-2xx answer."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self._base = base_url
        self._session = session

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.request(method, f"{self._base}/_sandbox{path}", json=body) as resp:
            data = await resp.json()
            if resp.status >= 300:
                raise ControlAPIError(resp.status, data)
            return data

    async def create_app(self, **fields: Any) -> SandboxApp:
        """Fields of `AppSeed`; client_key/secret are generated when omitted."""
        raw = await self.request("POST", "/apps", fields)
        return SandboxApp(
            client_key=raw["client_key"],
            client_secret=raw["client_secret"],
            app_type=raw["app_type"],
            redirect_uris=tuple(raw["redirect_uris"]),
            scopes=tuple(raw["scopes"]),
            raw=raw,
        )

    async def update_app(self, client_key: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", f"/apps/{client_key}", changes)
        return result

    async def create_creator(self, username: str, **fields: Any) -> dict[str, Any]:
        """Fields of `CreatorSeed` (private, banned, max_video_post_duration_sec, ...)."""
        result: dict[str, Any] = await self.request("POST", "/creators", {"username": username, **fields})
        return result

    async def update_creator(self, username: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", f"/creators/{username}", changes)
        return result

    async def issue_token(
        self, client_key: str, creator: str, scopes: list[str] | None = None
    ) -> IssuedToken:
        """A grant as if `creator` had completed OAuth for `client_key` (all app scopes by default)."""
        body: dict[str, Any] = {"client_key": client_key, "creator": creator}
        if scopes is not None:
            body["scopes"] = scopes
        raw = await self.request("POST", "/tokens", body)
        return IssuedToken(
            access_token=raw["access_token"],
            refresh_token=raw["refresh_token"],
            open_id=raw["open_id"],
            scope=raw["scope"],
            expires_in=raw["expires_in"],
            refresh_expires_in=raw.get("refresh_expires_in"),
        )

    async def expire_token(self, token: str) -> None:
        await self.request("POST", "/tokens/expire", {"token": token})

    async def revoke_token(self, token: str, reason: int = 1) -> None:
        await self.request("POST", "/tokens/revoke", {"token": token, "reason": reason})

    async def advance_time(self, seconds: float) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/time", {"advance_s": seconds})
        return result

    async def freeze_time(self, frozen: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/time", {"freeze": frozen})
        return result

    async def inject_fault(
        self,
        endpoint: str,
        *,
        count: int | None = 1,
        status: int | None = None,
        error_code: str | None = None,
        message: str | None = None,
        latency_ms: int = 0,
        reset_after_bytes: int | None = None,
        shape: str | None = None,
        body: str | None = None,
        log_id_header: bool = True,
        drop_fields: list[str] | None = None,
        null_fields: list[str] | None = None,
    ) -> dict[str, Any]:
        """Affect the next `count` requests to `endpoint` (a path; `/video/` for upload PUTs).

        `shape` is wrapped, flat, oauth, empty or text (`body` is the text); see docs/sandbox.md.
        """
        result: dict[str, Any] = await self.request(
            "POST",
            "/faults",
            {
                "endpoint": endpoint,
                "count": count,
                "status": status,
                "error_code": error_code,
                "message": message,
                "latency_ms": latency_ms,
                "reset_after_bytes": reset_after_bytes,
                "shape": shape,
                "body": body,
                "log_id_header": log_id_header,
                "drop_fields": drop_fields,
                "null_fields": null_fields,
            },
        )
        return result

    async def clear_faults(self) -> None:
        await self.request("DELETE", "/faults")

    async def posts(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        result: list[dict[str, Any]] = await self.request("GET", "/posts" + (f"?{query}" if query else ""))
        return result

    async def post(self, publish_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/posts/{publish_id}")
        return result

    async def user_posts_draft(self, publish_id: str, privacy_level: str | None = None) -> dict[str, Any]:
        body = {"privacy_level": privacy_level} if privacy_level else {}
        result: dict[str, Any] = await self.request("POST", f"/posts/{publish_id}/user_post", body)
        return result

    async def finish_moderation(self, publish_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/posts/{publish_id}/moderate")
        return result

    async def set_fail_reason(self, publish_id: str, fail_reason: str, when: str = "now") -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/posts/{publish_id}/fail", {"fail_reason": fail_reason, "when": when}
        )
        return result

    async def call_counts(self) -> dict[str, Any]:
        """`{"window_s", "rate_limited_total", "calls": [{token, endpoint, calls, accepted, rate_limited,
        max_in_window}]}`."""
        result: dict[str, Any] = await self.request("GET", "/calls")
        return result

    async def events(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/events")
        return result

    async def webhooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/webhooks")
        return result

    async def reset(self) -> None:
        await self.request("POST", "/reset")


@dataclass
class RunningSandbox:
    base_url: str  # e.g. http://127.0.0.1:43211 ; TIKTOK_API_BASE for clients
    control: SandboxControl
    app: web.Application

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/v2/auth/authorize/"

    @property
    def store(self) -> Store:
        """Direct access to state, for assertions the control API does not cover."""
        return self.app[STORE]

    def advance_clock(self, seconds: float) -> None:
        """Synchronous twin of `control.advance_time`, for code that cannot await."""
        self.app[CLOCK].advance(seconds)


@asynccontextmanager
async def run_sandbox(config: SandboxConfig | None = None) -> AsyncIterator[RunningSandbox]:
    """Start the real sandbox app on 127.0.0.1 and a random port; stop it on exit."""
    app = create_app(config or SandboxConfig())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base_url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(trust_env=False) as session:
            yield RunningSandbox(base_url=base_url, control=SandboxControl(base_url, session), app=app)
    finally:
        await runner.cleanup()


@pytest.fixture
def sandbox_config(tmp_path: Any) -> SandboxConfig:
    """Override in a test module to change knobs; media lands in the test's tmp_path."""
    return SandboxConfig(data_dir=str(tmp_path / "sandbox-data"))


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[RunningSandbox]:
    async with run_sandbox(sandbox_config) as running:
        yield running
