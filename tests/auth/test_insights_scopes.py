"""Insights scopes (issue 17): auth_service asks for ``video.list`` and ``user.info.stats`` too, and a
creator who unticks them on the consent page still connects, with the scopes they granted."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from common.events import EventType
from common.kafka import TOPIC_ACCOUNTS
from tests.auth.conftest import CREATOR
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

BASE_SCOPES = ["user.info.basic", "video.upload", "video.publish"]


@pytest.fixture
def sandbox_knobs() -> dict:
    return {}  # the consent page, where the creator chooses the scopes


async def test_creator_who_unticks_the_insights_scopes_still_connects(world):
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, trust_env=False) as http:
        async with http.get(world.auth.base_url + "/v1/connect") as r:
            page = await r.text()
            asked = parse_qs(urlsplit(str(r.url)).query)["scope"][0].split(",")
        assert asked == [*BASE_SCOPES, "video.list", "user.info.stats"]
        request_id = re.search(r'name="request_id" value="([^"]+)"', page)
        assert request_id, page
        form = aiohttp.FormData(
            [("request_id", request_id.group(1)), ("creator", CREATOR), ("decision", "authorize")]
            + [("scope", s) for s in BASE_SCOPES]
        )
        async with http.post(world.sandbox.base_url + "/v2/auth/authorize/", data=form) as r:
            final = str(r.url)
    assert final.startswith(world.auth.base_url + "/v1/connected?"), final
    account_id = parse_qs(urlsplit(final).query)["account_id"][0]
    conn = await asyncpg.connect(world.database_url)
    try:
        row = await conn.fetchrow("SELECT status FROM auth.accounts WHERE id = $1", account_id)
    finally:
        await conn.close()
    assert row["status"] == "connected"
    connected = await wait_for(
        lambda: world.reader.events(TOPIC_ACCOUNTS, EventType.account_connected), timeout=20
    )
    assert sorted(connected[0]["data"]["scopes"]) == sorted(BASE_SCOPES)
