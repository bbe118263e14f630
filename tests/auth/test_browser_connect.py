"""A real headless chromium goes through the whole redirect chain: our /v1/connect → the sandbox's
consent page (click Authorize) → our callback → the success URL. Cookies, redirects and SameSite
rules are the browser's own.

Drives chromium over the DevTools protocol the way tests/sandbox/test_browser_consent.py does (and
reuses its helpers). Without chromium this fails rather than skips: `make test` installs it.
"""

from __future__ import annotations

import contextlib

import aiohttp
import asyncpg
import pytest

from tests.sandbox.test_browser_consent import DevTools, chromium
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.stack]


@pytest.fixture
def sandbox_knobs() -> dict:
    return {}  # no auto-approve: a person (the browser) clicks Authorize on the consent page


async def _href(cdp: DevTools) -> str:
    result = await cdp.send("Runtime.evaluate", expression="location.href")
    return result["result"]["value"]


async def _eval(cdp: DevTools, expression: str):
    return (await cdp.send("Runtime.evaluate", expression=expression))["result"].get("value")


async def test_chromium_connects_an_account_through_the_consent_page(world, tmp_path):
    base = world.auth.base_url
    async with chromium(tmp_path / "profile") as port, aiohttp.ClientSession(trust_env=False) as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = DevTools(ws)
            await cdp.send("Page.enable")
            await cdp.send("Page.navigate", url=base + "/v1/connect")
            await cdp.until_event("Page.loadEventFired")
            assert (await _href(cdp)).startswith(world.sandbox.authorize_url)
            assert await _eval(cdp, "document.title") == "Authorize app"
            await cdp.send("Runtime.evaluate", expression="document.getElementById('authorize').click()")

            async def landed() -> str | None:
                href = await _href(cdp)
                return href if href.startswith(base + "/v1/connected?") else None

            final = await wait_for(landed, timeout=30, interval=0.2, description="the success URL")
            await wait_for(
                lambda: _eval(
                    cdp, "document.readyState === 'complete' && !!document.getElementById('account')"
                ),
                timeout=10,
            )
            shown = await _eval(cdp, "document.getElementById('account').textContent")
            with contextlib.suppress(Exception):
                await cdp.send("Browser.close")

    assert f"account_id={shown}&mode=direct&expires=" in final and "&signature=" in final  # signed: #12.13
    conn = await asyncpg.connect(world.database_url)
    try:
        row = await conn.fetchrow("SELECT id, status, token_version FROM auth.accounts")
    finally:
        await conn.close()
    assert row["id"] == shown and row["status"] == "connected" and row["token_version"] == 1
