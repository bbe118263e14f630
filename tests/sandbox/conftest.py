"""Helpers for the sandbox contract tests: a plain aiohttp client talking to the real sandbox over HTTP.

The `sandbox` and `sandbox_config` fixtures come from `tiktok_sandbox.testing`, which the root
conftest loads with `pytest_plugins`.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tiktok_sandbox.testing import IssuedToken, RunningSandbox, SandboxApp

MIB = 1024 * 1024
REDIRECT = "https://app.example.com/callback/"
LOG_ID = re.compile(r"^\d{14}[0-9A-F]{20}$")  # 34 characters, like every captured one


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def code(self) -> str:
        return self.body["error"]["code"]

    @property
    def data(self) -> dict[str, Any]:
        return self.body["data"]


@dataclass
class RawReply:
    status: int
    raw: bytes
    headers: Any


class Api:
    """TikTok's routes, called the way a production client would."""

    def __init__(self, sb: RunningSandbox, http: aiohttp.ClientSession) -> None:
        self.sb = sb
        self.http = http

    async def post(
        self, path: str, token: str | None = None, body: Any = None, raw: bytes | None = None
    ) -> Reply:
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with self.http.post(self.sb.base_url + path, headers=headers, **kwargs) as r:
            return Reply(r.status, await r.json(content_type=None), r.headers)

    async def raw(
        self,
        method: str,
        path: str,
        token: str | None = None,
        data: bytes = b"",
        content_type: str | None = None,
    ) -> RawReply:
        """Any request, answered as bytes: for answers that are not JSON (or must be checked exactly)."""
        headers = {"Content-Type": content_type or "application/json; charset=UTF-8"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.sb.base_url + path, headers=headers, data=data) as r:
            return RawReply(r.status, await r.read(), r.headers)

    async def form(self, path: str, fields: dict[str, str]) -> Reply:
        async with self.http.post(self.sb.base_url + path, data=fields) as r:
            return Reply(r.status, await r.json(content_type=None), r.headers)

    async def get(self, path: str, token: str | None = None, params: dict[str, str] | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.sb.base_url + path, headers=headers, params=params) as r:
            return Reply(r.status, await r.json(content_type=None), r.headers)

    async def init_direct(
        self,
        token: str,
        size: int,
        chunk: int | None = None,
        total: int | None = None,
        privacy: str = "SELF_ONLY",
        **post_info: Any,
    ) -> Reply:
        chunk = size if chunk is None else chunk
        total = size // chunk if total is None else total
        body = {
            "post_info": {"privacy_level": privacy, "title": "a #test", **post_info},
            "source_info": {
                "source": "FILE_UPLOAD",
                "video_size": size,
                "chunk_size": chunk,
                "total_chunk_count": total,
            },
        }
        return await self.post("/v2/post/publish/video/init/", token, body)

    async def init_inbox(self, token: str, size: int, chunk: int | None = None) -> Reply:
        chunk = size if chunk is None else chunk
        body = {
            "source_info": {
                "source": "FILE_UPLOAD",
                "video_size": size,
                "chunk_size": chunk,
                "total_chunk_count": size // chunk,
            }
        }
        return await self.post("/v2/post/publish/inbox/video/init/", token, body)

    async def put(
        self,
        url: str,
        data: bytes,
        first: int,
        total: int,
        *,
        last: int | None = None,
        content_type: str = "video/mp4",
        content_range: str | None = None,
    ) -> Reply:
        last = first + len(data) - 1 if last is None else last
        headers = {
            "Content-Type": content_type,
            "Content-Range": content_range or f"bytes {first}-{last}/{total}",
        }
        async with self.http.put(url, data=io.BytesIO(data), headers=headers) as r:
            return Reply(r.status, await r.text(), r.headers)

    async def upload(self, url: str, data: bytes, chunk: int) -> list[int]:
        """Upload `data` per the §5.1 plan; returns the statuses."""
        total = len(data) // chunk
        statuses = []
        for i in range(total):
            start = i * chunk
            end = len(data) if i == total - 1 else start + chunk
            statuses.append((await self.put(url, data[start:end], start, len(data))).status)
        return statuses

    async def status(self, token: str, publish_id: str) -> Reply:
        return await self.post("/v2/post/publish/status/fetch/", token, {"publish_id": publish_id})


@dataclass
class World:
    sb: RunningSandbox
    api: Api
    app: SandboxApp
    token: IssuedToken
    creator: str

    @property
    def t(self) -> str:
        return self.token.access_token


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(trust_env=False) as session:
        yield session


@pytest.fixture
def api(sandbox, http) -> Api:
    return Api(sandbox, http)


@pytest.fixture
async def world(sandbox, api) -> World:
    """An audited web app, a public creator `alice`, and a token with every scope."""
    app = await sandbox.control.create_app(redirect_uris=[REDIRECT])
    await sandbox.control.create_creator("alice", nickname="Alice")
    token = await sandbox.control.issue_token(app.client_key, "alice")
    return World(sandbox, api, app, token, "alice")


def payload(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]
