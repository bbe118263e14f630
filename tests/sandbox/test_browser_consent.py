"""A real browser clicks Authorize on the consent page and lands on the redirect URI (§2.1, §2.2).

Drives Debian's headless chromium over the Chrome DevTools protocol (a websocket, via aiohttp).
`make test` installs chromium; without it this test fails, on purpose, rather than skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from tests.waiting import wait_for
from tiktok_sandbox.config import SandboxConfig

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.fixture
def sandbox_config(tmp_path):
    # Local stacks redirect to http://127.0.0.1; TikTok would insist on https for a web app.
    return SandboxConfig(data_dir=str(tmp_path / "data"), allow_http_web_redirects=True)


class Callback:
    """The app's redirect target: records the query string the browser arrives with."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        return web.Response(text="connected", content_type="text/html")


@contextlib.asynccontextmanager
async def callback_server():
    cb = Callback()
    app = web.Application()
    app.router.add_get("/callback/", cb.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield cb, f"http://127.0.0.1:{runner.addresses[0][1]}/callback/"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium(profile: Path):
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is not installed: run `apt-get update && apt-get install -y chromium "
            "chromium-driver` (make test does this)."
        )
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        await wait_for(port_file.exists, timeout=30, description="chromium's DevToolsActivePort file")
        port = int(port_file.read_text().split()[0])
        yield port
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class DevTools:
    """Just enough of CDP: send a command, wait for its answer or for an event."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    async def send(self, method: str, **params):
        msg_id = next(self.ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive(timeout=30)).data)
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self.events.append(msg)

    async def until_event(self, method: str, timeout: float = 30):
        async def seen():
            if any(e.get("method") == method for e in self.events):
                return True
            msg = json.loads((await self.ws.receive(timeout=timeout)).data)
            self.events.append(msg)
            return msg.get("method") == method

        await wait_for(seen, timeout=timeout, interval=0, description=f"CDP event {method}")
        self.events = [e for e in self.events if e.get("method") != method]


async def test_browser_clicks_authorize_and_lands_on_redirect_uri_with_code_and_state(sandbox, tmp_path):
    async with callback_server() as (cb, redirect_uri):
        app = await sandbox.control.create_app(redirect_uris=[redirect_uri], name="Browser test app")
        await sandbox.control.create_creator("alice")
        url = (
            sandbox.authorize_url
            + "?"
            + urlencode(
                {
                    "client_key": app.client_key,
                    "scope": "user.info.basic,video.publish,video.upload",
                    "response_type": "code",
                    "redirect_uri": redirect_uri,
                    "state": "xyz-42",
                }
            )
        )
        async with chromium(tmp_path / "profile") as port, aiohttp.ClientSession(trust_env=False) as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = DevTools(ws)
                await cdp.send("Page.enable")
                await cdp.send("Page.navigate", url=url)
                await cdp.until_event("Page.loadEventFired")
                title = await cdp.send("Runtime.evaluate", expression="document.title")
                assert title["result"]["value"] == "Authorize app"
                await cdp.send("Runtime.evaluate", expression="document.getElementById('authorize').click()")
                await wait_for(lambda: cb.queries, timeout=30, description="the redirect to the app")
                await cdp.until_event("Page.loadEventFired")
                here = await cdp.send("Runtime.evaluate", expression="location.href")
                with contextlib.suppress(Exception):
                    await cdp.send("Browser.close")

    (query,) = cb.queries
    assert query["state"] == "xyz-42"
    assert query["scopes"] == "user.info.basic,video.publish,video.upload"
    assert query["code"]
    assert here["result"]["value"].startswith(redirect_uri + "?code=")
    token = await _exchange(sandbox, app, query["code"], redirect_uri)
    assert token["access_token"].startswith("act.")


async def _exchange(sandbox, app, code, redirect_uri):
    form = {
        "client_key": app.client_key,
        "client_secret": app.client_secret,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
    }
    async with (
        aiohttp.ClientSession(trust_env=False) as http,
        http.post(sandbox.base_url + "/v2/oauth/token/", data=form) as r,
    ):
        return await r.json()
