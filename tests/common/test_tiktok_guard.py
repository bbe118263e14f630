"""What the TikTok client refuses on an answer's say-so (issue 12, points 5 and 6): it never follows
a redirect (the form body with ``client_secret`` would be re-sent to that origin), it sends media only
to an ``upload_url`` on TikTok's upload domains (or the configured API's own origin), and it reads
answers up to a size limit. The "TikTok" here is a hostile server on loopback, a second server on
another port plays the attacker's origin, and the test checks what reached it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from common.tiktok.client import TikTokClient
from common.tiktok.errors import TikTokError, TikTokTransportError
from common.tiktok.guard import TikTokRedirect

SECRET = "client-secret-must-stay-home"


class Origin:
    """A loopback HTTP server that records every request it gets and answers with ``answer``."""

    def __init__(self, answer: Callable[[web.Request], web.StreamResponse]) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str, bytes]] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, await request.read()))
        return self.answer(request)


@pytest.fixture
async def servers() -> AsyncIterator[Callable[[Callable[[web.Request], web.StreamResponse]], Any]]:
    runners: list[web.AppRunner] = []

    async def start(answer: Callable[[web.Request], web.StreamResponse]) -> Origin:
        origin = Origin(answer)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", origin.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        origin.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return origin

    yield start
    for runner in runners:
        await runner.cleanup()


def _ok(data: dict[str, Any]) -> web.Response:
    return web.json_response({"data": data, "error": {"code": "ok", "message": "", "log_id": "l"}})


async def _client(session: aiohttp.ClientSession, base: str) -> TikTokClient:
    return TikTokClient(session, base, client_key="ck", client_secret=SECRET, timeout=5.0)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_on_the_token_endpoint_is_an_error_and_the_secret_stays_home(servers, status):
    attacker = await servers(lambda r: web.json_response({"access_token": "a", "refresh_token": "r"}))
    tiktok = await servers(
        lambda r: web.Response(
            status=status, headers={"Location": f"http://localhost:{attacker.base.rsplit(':', 1)[1]}/x"}
        )
    )
    async with aiohttp.ClientSession() as session:
        client = await _client(session, tiktok.base)
        with pytest.raises(TikTokRedirect, match="redirect to localhost") as caught:
            await client.refresh("refresh-token-value")
    assert caught.value.location_host == "localhost" and not caught.value.maybe_applied
    assert attacker.seen == [], "the request reached the redirect's origin"
    assert len(tiktok.seen) == 1


async def test_a_redirect_on_an_api_call_is_an_error(servers):
    attacker = await servers(lambda r: _ok({"publish_id": "p"}))
    tiktok = await servers(lambda r: web.Response(status=307, headers={"Location": attacker.base + "/steal"}))
    async with aiohttp.ClientSession() as session:
        client = await _client(session, tiktok.base)
        with pytest.raises(TikTokRedirect, match=r"127\.0\.0\.1"):
            await client.init_inbox_video("access-token", {"source": "FILE_UPLOAD"})
    assert attacker.seen == []


async def test_a_redirect_on_an_upload_put_is_an_error_and_no_media_is_sent_elsewhere(servers):
    attacker = await servers(lambda r: web.Response(status=201))
    upload = await servers(
        lambda r: web.Response(status=307, headers={"Location": attacker.base + "/video/"})
    )

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000

    async with aiohttp.ClientSession() as session:
        client = await _client(session, upload.base)
        with pytest.raises(TikTokRedirect):
            await client.put_chunk(
                upload.base + "/video/?upload_token=t", body(), first=0, last=999, total=1000
            )
    assert attacker.seen == []


@pytest.mark.parametrize(
    "upload_url",
    [
        "https://evil.example/video/?upload_id=1&upload_token=t",
        "http://open-upload.tiktokapis.com/video/?upload_token=t",  # not https
        "https://open-upload.tiktokapis.com.evil.example/video/",  # a suffix, not a subdomain
        "https://eviltiktokapis.com/video/",
        "ftp://open-upload.tiktokapis.com/video/",
        "https:///video/",
        "//open-upload.tiktokapis.com/video/",
        "http://127.0.0.1:1/video/",  # loopback, but not the configured API's origin
    ],
)
async def test_an_upload_url_off_tiktoks_upload_domains_is_refused(servers, upload_url):
    tiktok = await servers(lambda r: _ok({"publish_id": "v_inbox_file~v2.1", "upload_url": upload_url}))
    async with aiohttp.ClientSession() as session:
        client = await _client(session, tiktok.base)
        with pytest.raises(TikTokError, match="upload_url") as caught:
            await client.init_inbox_video("access-token", {"source": "FILE_UPLOAD"})
    assert caught.value.tiktok_code == "invalid_upload_url"
    assert not caught.value.retriable


@pytest.mark.parametrize(
    "upload_url",
    [
        "https://open-upload.tiktokapis.com/video/?upload_id=1&upload_token=t",
        "https://upload.us.tiktokapis.com/video/?upload_id=1",
        "https://OPEN-UPLOAD.TIKTOKAPIS.COM/upload/?x=1",
        "{base}/video/?upload_id=1&upload_token=t",  # the configured API base's origin (the sandbox)
    ],
)
async def test_an_upload_url_on_tiktoks_upload_domains_is_accepted(servers, upload_url):
    holder: dict[str, str] = {}
    tiktok = await servers(
        lambda r: _ok(
            {"publish_id": "v_inbox_file~v2.1", "upload_url": upload_url.format(base=holder["base"])}
        )
    )
    holder["base"] = tiktok.base
    async with aiohttp.ClientSession() as session:
        client = await _client(session, tiktok.base)
        result = await client.init_inbox_video("access-token", {"source": "FILE_UPLOAD"})
    assert result.upload_url == upload_url.format(base=tiktok.base)


async def test_the_upload_domains_are_configurable(servers):
    tiktok = await servers(lambda r: _ok({"publish_id": "p", "upload_url": "https://up.example.net/v/"}))
    async with aiohttp.ClientSession() as session:
        client = TikTokClient(
            session, tiktok.base, client_key="ck", client_secret=SECRET, upload_domains=("example.net",)
        )
        assert (await client.init_inbox_video("t", {})).upload_url == "https://up.example.net/v/"
        default = await _client(session, tiktok.base)
        with pytest.raises(TikTokError, match="upload_url"):
            await default.init_inbox_video("t", {})


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_over_the_size_limit_is_not_read(servers, chunked):
    huge = json.dumps({"data": {"publish_id": "p", "pad": "x" * (2 * 1024 * 1024)}, "error": {"code": "ok"}})

    def answer(request: web.Request) -> web.StreamResponse:
        response = web.Response(text=huge, content_type="application/json")
        if chunked:
            response.enable_chunked_encoding()
        return response

    tiktok = await servers(answer)
    async with aiohttp.ClientSession() as session:
        client = await _client(session, tiktok.base)
        with pytest.raises(TikTokTransportError, match="bytes"):
            await client.init_inbox_video("t", {})
