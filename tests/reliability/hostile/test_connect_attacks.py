"""The connect flow and the accounts API attacked through the running pipeline (#12.11-15, #12.22):
forged hand-offs, a planted browser nonce, a token answer without open_id, partial consent, and what
an unauthenticated /readyz shows."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.reliability.hostile.harness import MARKS, Run
from tests.reliability.hostile.http_cases import PAGE_CASES, PageCase
from tiktok_pipeline.local import CREATOR

pytestmark = MARKS


def _code(page: str) -> str | None:
    found = re.search(r'id="code">([^<]+)<', page)
    return found.group(1) if found else None


@pytest.mark.parametrize("case", PAGE_CASES, ids=[c.id for c in PAGE_CASES])
async def test_a_forged_hand_off_is_refused_with_a_page_naming_it(
    run: Run, http: aiohttp.ClientSession, case: PageCase
) -> None:
    async with http.get(run.pipeline.auth_url + case.path, allow_redirects=False) as r:
        page = await r.text()
    assert r.status == case.status and r.content_type == "text/html", page[:400]
    assert _code(page) == case.code and case.phrase in page and "Account connected" not in page


async def _consent(run: Run, browser: aiohttp.ClientSession, scopes: list[str] | None) -> tuple[int, str]:
    """/v1/connect, then Authorize with ``scopes`` (None: all offered) ticked; the callback's answer."""
    p = run.pipeline
    async with browser.get(f"{p.auth_url}/v1/connect", allow_redirects=False) as r:
        authorize = r.headers["Location"]
    async with browser.get(authorize, allow_redirects=False) as r:
        page = await r.text()
    request_id = re.search(r'name="request_id" value="([^"]+)"', page)
    assert request_id is not None, page[:300]
    offered = re.findall(r'name="scope" value="([^"]+)" checked', page)
    form = aiohttp.FormData(
        [("request_id", request_id.group(1)), ("creator", CREATOR), ("decision", "authorize")]
        + [("scope", s) for s in (offered if scopes is None else scopes)]
    )
    async with browser.post(urljoin(authorize, "/v2/auth/authorize/"), data=form, allow_redirects=False) as r:
        callback = r.headers["Location"]
    async with browser.get(callback, allow_redirects=False) as r:
        return r.status, await r.text()


def _browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_a_planted_browser_nonce_is_replaced(run: Run, http: aiohttp.ClientSession) -> None:
    planted = "P" * 43
    url = f"{run.pipeline.auth_url}/v1/connect"
    async with http.get(url, headers={"Cookie": f"tt_connect={planted}"}, allow_redirects=False) as r:
        assert r.status == 302
        assert r.cookies["tt_connect"].value not in ("", planted)


async def test_a_token_answer_without_open_id_is_refused(run: Run, http: aiohttp.ClientSession) -> None:
    fault = {"endpoint": "/v2/oauth/token/", "count": 1, "null_fields": ["open_id"]}
    async with http.post(f"{run.pipeline.sandbox_url}/_sandbox/faults", json=fault) as r:
        assert r.status == 201, await r.text()
    async with _browser() as browser:
        status, page = await _consent(run, browser, None)
    assert status == 502 and _code(page) == "code_exchange_failed" and "open_id" in page, page[:400]


async def test_consent_without_a_posting_permission_names_it(run: Run) -> None:
    async with _browser() as browser:
        status, page = await _consent(run, browser, ["user.info.basic"])
    assert status == 403 and _code(page) == "scope_missing" and "video.publish" in page, page[:400]


async def test_readyz_shows_names_and_states_only(run: Run, http: aiohttp.ClientSession) -> None:
    for base in (run.pipeline.auth_url, run.pipeline.publish_url):
        async with http.get(f"{base}/readyz") as r:
            body = await r.json()
        assert set(body) <= {"status", "checks", "failed"}, body
        assert set(body["checks"].values()) <= {"ok", "failing"}, body
