"""Arbitrary JSON, strings and headers at every sandbox endpoint: no 5xx unless injected (issue 13, point 7).

TikTok answers a bad request with its error, never with a crash; the sandbox must too, or a client's
error handling would be tested against answers TikTok never gives. Every answer must also carry a
Content-Type true to its body.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import run_sandbox

VERIFIED = "https://media.example.com/"
REDIRECT = "https://app.example.com/callback/"


@dataclass
class Live:
    host: str
    port: int
    token: str
    client_key: str
    client_secret: str
    upload_path: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One sandbox on its own loop in a thread, so synchronous hypothesis examples can call it."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    config = SandboxConfig(data_dir=str(tmp_path_factory.mktemp("fuzz")), rate_limits={})

    async def main() -> None:
        async with run_sandbox(config) as sb:
            app = await sb.control.create_app(
                redirect_uris=[REDIRECT], verified_domains=["media.example.com"]
            )
            await sb.control.create_creator("alice")
            token = await sb.control.issue_token(app.client_key, "alice")
            http_ = sb.control._session
            init = {
                "post_info": {"privacy_level": "SELF_ONLY"},
                "source_info": {
                    "source": "FILE_UPLOAD",
                    "video_size": 6 * 1024 * 1024,
                    "chunk_size": 5 * 1024 * 1024,
                    "total_chunk_count": 1,
                },
            }
            async with http_.post(
                sb.base_url + "/v2/post/publish/video/init/", json=init, headers=token.auth_header
            ) as r:
                upload_url = (await r.json())["data"]["upload_url"]
            parts = urlsplit(sb.base_url)
            holder["live"] = Live(
                parts.hostname or "",
                parts.port or 0,
                token.access_token,
                app.client_key,
                app.client_secret,
                upload_url[len(sb.base_url) :],
            )
            holder["stop"] = asyncio.Event()
            ready.set()
            await holder["stop"].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the sandbox did not start"
    try:
        yield holder["live"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(30)
        loop.close()


def _call(
    live: Live, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(live.host, live.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# Text including lone surrogates (they survive JSON as \ud800 escapes), and JSON of any shape.
TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, JSON)


URLS = _maybe(
    st.sampled_from(
        ["https://[::1/v.mp4", VERIFIED + "v.mp4", "http://x", "https://media.example.com:0/", ""]
    )
    | TEXT.map(lambda t: VERIFIED + t)
)
POST_INFO = st.fixed_dictionaries(
    {},
    optional={
        "title": _maybe(TEXT),
        "description": _maybe(TEXT),
        "privacy_level": _maybe(st.sampled_from(["SELF_ONLY", "PUBLIC_TO_EVERYONE", "NOPE"])),
        "disable_comment": JSON,
        "brand_content_toggle": JSON,
        "video_cover_timestamp_ms": JSON,
    },
)
SOURCE_INFO = st.fixed_dictionaries(
    {},
    optional={
        "source": _maybe(st.sampled_from(["FILE_UPLOAD", "PULL_FROM_URL"])),
        "video_size": _maybe(st.integers(-1, 5 * 2**30)),
        "chunk_size": _maybe(st.integers(-1, 2**28)),
        "total_chunk_count": _maybe(st.integers(-1, 2000)),
        "video_url": URLS,
        "photo_images": _maybe(st.lists(URLS, max_size=3)),
        "photo_cover_index": _maybe(st.integers(-2, 3)),
    },
)
INIT_BODY = st.fixed_dictionaries(
    {},
    optional={
        "post_info": _maybe(POST_INFO),
        "source_info": _maybe(SOURCE_INFO),
        "media_type": _maybe(st.just("PHOTO")),
        "post_mode": _maybe(st.sampled_from(["DIRECT_POST", "MEDIA_UPLOAD"])),
        "publish_id": _maybe(TEXT),
    },
)
BODIES = st.one_of(
    INIT_BODY.map(lambda b: json.dumps(b).encode()),
    JSON.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=200),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)
API_PATHS = st.sampled_from(
    [
        "/v2/post/publish/creator_info/query/",
        "/v2/post/publish/video/init/",
        "/v2/post/publish/inbox/video/init/",
        "/v2/post/publish/content/init/",
        "/v2/post/publish/status/fetch/",
        "/v2/post/publish/cancel/",
        "/v2/video/query/",
    ]
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json; charset=UTF-8",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
    ]
)


def _check(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status < 500, (status, body[:300])
    content_type = headers.get("content-type", "")
    if body:
        assert content_type, body[:100]
    if content_type.startswith("application/json"):
        json.loads(body)


FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(path=API_PATHS, body=BODIES, content_type=CONTENT_TYPES, authorized=st.booleans())
def test_content_posting_endpoints_never_answer_5xx(
    live: Live, path: str, body: bytes, content_type: str, authorized: bool
) -> None:
    headers = {"Content-Type": content_type}
    if authorized:
        headers["Authorization"] = f"Bearer {live.token}"
    _check(*_call(live, "POST", path, body, headers))


@FUZZ
@given(
    path=st.sampled_from(["/v2/oauth/token/", "/v2/oauth/revoke/"]),
    form=st.dictionaries(
        st.sampled_from(
            [
                "client_key",
                "client_secret",
                "grant_type",
                "code",
                "refresh_token",
                "redirect_uri",
                "code_verifier",
                "token",
            ]
        )
        | TEXT,
        _maybe(st.sampled_from(["refresh_token", "authorization_code", "client_credentials"])).map(str),
        max_size=6,
    ),
    real_client=st.booleans(),
    raw=st.none() | st.binary(max_size=100),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=zz", "application/json", ""]
    ),
)
def test_oauth_endpoints_never_answer_5xx(
    live: Live, path: str, form: dict[str, str], real_client: bool, raw: bytes | None, content_type: str
) -> None:
    if real_client:
        form = {**form, "client_key": live.client_key, "client_secret": live.client_secret}
    body = raw if raw is not None else urlencode(form, encoding="utf-8", errors="surrogatepass").encode()
    _check(*_call(live, "POST", path, body, {"Content-Type": content_type}))


@FUZZ
@given(
    fields=st.lists(TEXT | st.sampled_from(["open_id", "username", "display_name"]), max_size=4),
    authorized=st.booleans(),
)
def test_user_info_never_answers_5xx(live: Live, fields: list[str], authorized: bool) -> None:
    query = quote(",".join(fields), safe=",", errors="surrogatepass")
    headers = {"Authorization": f"Bearer {live.token}"} if authorized else {}
    _check(*_call(live, "GET", f"/v2/user/info/?fields={query}", b"", headers))


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(
            [
                "client_key",
                "redirect_uri",
                "scope",
                "response_type",
                "state",
                "code_challenge",
                "code_challenge_method",
            ]
        )
        | TEXT,
        TEXT,
        max_size=7,
    ),
    real=st.booleans(),
)
def test_authorize_never_answers_5xx(live: Live, query: dict[str, str], real: bool) -> None:
    if real:
        query = {**query, "client_key": live.client_key, "redirect_uri": REDIRECT}
    qs = urlencode(query, encoding="utf-8", errors="surrogatepass")
    status, headers, body = _call(live, "GET", f"/v2/auth/authorize/?{qs}", b"", {})
    _check(status, headers, body)


@FUZZ
@given(
    content_range=_maybe(st.sampled_from(["bytes 0-5242879/6291456", "bytes 0-0/1", "bytes */6291456"])).map(
        str
    )
    | TEXT.map(lambda t: t.encode("utf-8", "replace").decode("latin-1")),
    content_type=st.sampled_from(
        ["video/mp4", "video/webm", "application/octet-stream", "", 'video/mp4; x="']
    ),
    body=st.binary(max_size=2000),
    query=st.sampled_from(["", "upload_id=x", "upload_token=y"]),
)
def test_upload_put_never_answers_5xx(
    live: Live, content_range: str, content_type: str, body: bytes, query: str
) -> None:
    path = live.upload_path if not query else f"/video/?{query}"
    headers = {
        "Content-Type": content_type,
        # Header values travel as latin-1: other text arrives as its UTF-8 bytes.
        "Content-Range": content_range.encode("utf-8", "surrogatepass")
        .decode("latin-1")
        .replace("\r", "")
        .replace("\n", ""),
    }
    _check(*_call(live, "PUT", path, body, headers))
