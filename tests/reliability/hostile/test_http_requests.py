"""Each hostile HTTP request gets a clear JSON error; replayed webhooks and OAuth states are refused.

The answer to every case of ``http_cases.py`` has the case's HTTP status, ``application/json``, and an
``error`` whose ``code`` is the case's and whose ``message`` contains its phrase.
"""

from __future__ import annotations

import json
import time
import uuid

import aiohttp
import pytest

from common.tiktok.webhooks import sign
from tests.reliability.hostile.harness import MARKS, Run, authorize, send_http_case
from tests.reliability.hostile.http_cases import HTTP_CASES, HttpCase

pytestmark = MARKS


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
async def test_hostile_http_request_gets_a_clear_json_error(
    run: Run, http: aiohttp.ClientSession, case: HttpCase
) -> None:
    status, content_type, text = await send_http_case(http, run.pipeline, case)
    assert status == case.status, text[:500]
    assert content_type == "application/json", text[:500]
    error = json.loads(text)["error"]
    assert error["code"] == case.code, error
    assert case.phrase.lower() in error["message"].lower(), error


async def test_a_replayed_webhook_is_recognised(run: Run, http: aiohttp.ClientSession) -> None:
    p = run.pipeline
    body = json.dumps(
        {
            "event": "post.publish.complete",
            "user_openid": "x",
            "create_time": int(time.time()),
            "content": json.dumps({"publish_id": f"v_pub_file~v2-1.{uuid.uuid4().int % 10**9}"}),
        }
    ).encode()
    signature = sign(body, p.client_secret, int(time.time()))
    outcomes = []
    for _ in range(2):
        async with http.post(
            f"{p.publish_url}/v1/webhooks/tiktok", data=body, headers={"TikTok-Signature": signature}
        ) as r:
            assert r.status == 200
            outcomes.append((await r.json())["outcome"])
    assert outcomes == ["unknown_post", "duplicate"]


async def test_a_stale_webhook_signature_is_refused(run: Run, http: aiohttp.ClientSession) -> None:
    p = run.pipeline
    body = b'{"event": "post.publish.complete", "content": "{}"}'
    signature = sign(body, p.client_secret, int(time.time()) - 3600)  # a valid MAC, an hour old
    async with http.post(
        f"{p.publish_url}/v1/webhooks/tiktok", data=body, headers={"TikTok-Signature": signature}
    ) as r:
        assert r.status == 401
        assert "outside the tolerance" in (await r.json())["error"]["message"]


async def test_oauth_state_replay_and_foreign_browser_are_refused(run: Run) -> None:
    p = run.pipeline
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        callback = await authorize(p, browser)
        async with browser.get(callback, allow_redirects=False) as r:
            assert r.status == 302 and "account_id=" in r.headers["Location"]
        # The same callback again (a replayed state): refused, and it names why.
        async with browser.get(callback, allow_redirects=False) as r:
            replay_status, replay_page = r.status, await r.text()
        second = await authorize(p, browser)
    assert replay_status == 400 and "state" in replay_page.lower(), replay_page[:400]
    # A fresh state's callback opened by another browser (no cookie): refused, the code unused.
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with other, other.get(second, allow_redirects=False) as r:
        assert r.status == 400, await r.text()
        assert "browser" in (await r.text()).lower()
    # A forged state: refused.
    async with aiohttp.ClientSession() as forger:
        url = f"{p.auth_url}/v1/oauth/callback?code=forged&state={'A' * 43}"
        async with forger.get(url, allow_redirects=False) as r:
            assert r.status == 400 and "state" in (await r.text()).lower()
