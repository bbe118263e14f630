"""The client against exact answers TikTok gives (issue 13, points 1-5), served over loopback HTTP.

Each case is a status, headers and body byte-for-byte; the client must turn it into the right result
or the same typed error (code, message, log id, action), whatever shape TikTok used.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from common.tiktok import answers
from common.tiktok.client import TikTokClient
from common.tiktok.errors import Action, TikTokConfigError, TikTokError, TikTokTransportError
from common.tiktok.webhooks import BadEvent, parse_event

LOG = "20240829190020EBE0D84CCEA6DE000CB6"


@dataclass
class Canned:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, Canned]]]:
    """A loopback server answering each path with what the test put in the dict."""
    canned: dict[str, Canned] = {}

    async def handle(request: web.Request) -> web.Response:
        answer = canned.get(request.path)
        if answer is None:
            return web.Response(status=404, text="Unsupported path(Janus)", content_type="text/plain")
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", canned
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


TOKEN = "/v2/oauth/token/"
USER = "/v2/user/info/"
INIT = "/v2/post/publish/video/init/"
STATUS = "/v2/post/publish/status/fetch/"

# (path, status, headers, body, expected code, message, log id, action)
ERROR_CASES = [
    pytest.param(
        INIT,
        400,
        {},
        _json({"code": "invalid_params", "message": "The chunk size is invalid", "log_id": LOG}),
        "invalid_params",
        "The chunk size is invalid",
        LOG,
        Action.never,
        id="flat-v2-400",
    ),
    pytest.param(
        USER,
        401,
        {},
        _json({"code": "access_token_invalid", "message": "The access token is invalid.", "log_id": LOG}),
        "access_token_invalid",
        "The access token is invalid.",
        LOG,
        Action.refresh,
        id="flat-v2-401",
    ),
    pytest.param(
        USER,
        200,
        {},
        _json({"code": "access_token_invalid", "message": "expired", "log_id": LOG}),
        "access_token_invalid",
        "expired",
        LOG,
        Action.refresh,
        id="flat-v2-at-200",
    ),
    pytest.param(
        INIT,
        403,
        {},
        _json({"data": {}, "error": {"code": "spam_risk_too_many_posts", "message": "cap", "log_id": LOG}}),
        "spam_risk_too_many_posts",
        "cap",
        LOG,
        Action.retry_later,
        id="wrapped-v2-403",
    ),
    pytest.param(
        INIT,
        200,
        {},
        _json({"error": {"code": "reached_active_user_cap", "message": "quota", "logid": LOG}}),
        "reached_active_user_cap",
        "quota",
        LOG,
        Action.retry_later,
        id="wrapped-v2-at-200-logid-typo",
    ),
    pytest.param(
        TOKEN,
        200,
        {},
        _json(
            {
                "error": "invalid_grant",
                "error_description": "Refresh token is invalid or expired.",
                "log_id": LOG,
            }
        ),
        "invalid_grant",
        "Refresh token is invalid or expired.",
        LOG,
        Action.needs_user,
        id="flat-oauth-at-200",
    ),
    pytest.param(
        TOKEN,
        400,
        {},
        _json(
            {
                "error": "invalid_request",
                "error_description": "Client secret is missed in request.",
                "log_id": LOG,
            }
        ),
        "invalid_request",
        "Client secret is missed in request.",
        LOG,
        Action.never,
        id="flat-oauth-400",
    ),
    pytest.param(
        USER,
        401,
        {},
        _json({"error": "invalid_client", "error_description": "bad key", "log_id": LOG}),
        "invalid_client",
        "bad key",
        LOG,
        Action.never,
        id="flat-oauth-on-a-v2-path",
    ),
    pytest.param(
        INIT,
        503,
        {},
        _json({"code": "internal_error", "message": "busy", "log_id": LOG}),
        "internal_error",
        "busy",
        LOG,
        Action.retry,
        id="flat-v2-503",
    ),
    pytest.param(
        TOKEN,
        403,
        {"x-tt-logid": LOG},
        b"",
        "",
        "empty answer, HTTP 403",
        LOG,
        Action.never,
        id="empty-403-logid-header",
    ),
    pytest.param(
        INIT,
        502,
        {"x-tt-logid": LOG, "Content-Type": "text/html"},
        b"<html>Bad Gateway</html>",
        "",
        "non-JSON answer '<html>Bad Gateway</html>', HTTP 502",
        LOG,
        Action.retry,
        id="text-502",
    ),
    pytest.param(
        INIT,
        429,
        {},
        b"",
        "",
        "empty answer, HTTP 429",
        None,
        Action.retry,
        id="empty-429",
    ),
    pytest.param(
        INIT,
        400,
        {"x-tt-logid": LOG},
        _json({"data": {}}),
        "",
        "HTTP 400 with no error code",
        LOG,
        Action.never,
        id="json-without-code-400",
    ),
]


@pytest.mark.parametrize(
    ("path", "status", "headers", "body", "code", "message", "log_id", "action"), ERROR_CASES
)
async def test_every_error_shape_becomes_one_typed_error(
    server: tuple[str, dict[str, Canned]],
    session: aiohttp.ClientSession,
    path: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    code: str,
    message: str,
    log_id: str | None,
    action: Action,
) -> None:
    base, canned = server
    canned[path] = Canned(status, body, headers)
    client = TikTokClient(session, base, client_key="ck", client_secret="cs")
    with pytest.raises(TikTokError) as caught:
        if path == TOKEN:
            await client.refresh("rft.old")
        elif path == USER:
            await client.user_info("act.x")
        else:
            await client.init_direct_video("act.x", {"privacy_level": "SELF_ONLY"}, {"source": "FILE_UPLOAD"})
    exc = caught.value
    assert (exc.tiktok_code, exc.message, exc.log_id, exc.action, exc.status) == (
        code,
        message,
        log_id,
        action,
        status,
    )
    assert not isinstance(exc, TikTokConfigError)


async def test_gateway_text_404_is_a_configuration_error_naming_the_url(
    server: tuple[str, dict[str, Canned]], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    seen: list[tuple[str, str]] = []
    client = TikTokClient(
        session,
        base + "/wrong",
        client_key="ck",
        client_secret="cs",
        observer=lambda endpoint, result, _s: seen.append((endpoint, result)),
    )
    with pytest.raises(TikTokConfigError) as caught:
        await client.fetch_status("act.x", "v_pub_file~v2-1.1")
    exc = caught.value
    assert exc.action is Action.never and not exc.retriable
    assert exc.status == 404 and exc.tiktok_code == ""
    assert f"{base}/wrong/v2/post/publish/status/fetch/" in exc.message
    assert "Unsupported path(Janus)" in exc.message
    assert seen == [(STATUS, "http_404")]


async def test_json_404_is_tiktoks_answer_not_a_configuration_error(
    server: tuple[str, dict[str, Canned]], session: aiohttp.ClientSession
) -> None:
    base, canned = server
    canned[STATUS] = Canned(404, _json({"error": {"code": "not_found", "message": "m", "log_id": LOG}}))
    client = TikTokClient(session, base, client_key="ck", client_secret="cs")
    with pytest.raises(TikTokError) as caught:
        await client.fetch_status("act.x", "p")
    assert not isinstance(caught.value, TikTokConfigError)
    assert caught.value.tiktok_code == "not_found"


async def test_text_body_at_200_is_a_transport_error_that_may_have_applied(
    server: tuple[str, dict[str, Canned]], session: aiohttp.ClientSession
) -> None:
    base, canned = server
    canned[INIT] = Canned(200, b"<html>ok</html>", {"x-tt-logid": LOG})
    client = TikTokClient(session, base, client_key="ck", client_secret="cs")
    with pytest.raises(TikTokTransportError) as caught:
        await client.init_direct_video("act.x", {}, {})
    assert caught.value.maybe_applied and LOG in caught.value.message


async def test_empty_200_on_revoke_is_success(
    server: tuple[str, dict[str, Canned]], session: aiohttp.ClientSession
) -> None:
    base, canned = server
    canned["/v2/oauth/revoke/"] = Canned(200, b"")
    client = TikTokClient(session, base, client_key="ck", client_secret="cs")
    await client.revoke("act.x")


GRANT = {
    "access_token": "act.new!1234",
    "expires_in": 86400,
    "open_id": "o-1",
    "refresh_token": "rft.new!1234",
    "scope": "user.info.basic,video.upload",
    "token_type": "Bearer",
}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        ({"refresh_expires_in": 31536000}, 31536000),
        ({"refresh_expires_in": "15552000"}, 15552000),
    ],
)
async def test_refresh_expires_in_missing_is_unknown_not_zero(
    server: tuple[str, dict[str, Canned]],
    session: aiohttp.ClientSession,
    extra: dict[str, object],
    expected: int | None,
) -> None:
    base, canned = server
    canned[TOKEN] = Canned(200, _json({**GRANT, **extra}))
    client = TikTokClient(session, base, client_key="ck", client_secret="cs")
    grant = await client.refresh("rft.old")
    assert grant.refresh_expires_in == expected
    assert grant.expires_in == 86400 and grant.scopes == ("user.info.basic", "video.upload")


async def test_wrapped_success_with_a_log_id_header_fallback(
    server: tuple[str, dict[str, Canned]], session: aiohttp.ClientSession
) -> None:
    base, canned = server
    canned[INIT] = Canned(
        200,
        _json(
            {
                "data": {
                    "publish_id": "v_pub_file~v2-1.7123456789012345678",
                    "upload_url": "https://open-upload.tiktokapis.com/video/?a=1",
                },
                "error": {"code": "ok", "message": ""},
            }
        ),
        {"x-tt-logid": LOG},
    )
    client = TikTokClient(session, base, client_key="ck", client_secret="cs")
    result = await client.init_direct_video("act.x", {}, {})
    assert result.publish_id == "v_pub_file~v2-1.7123456789012345678" and result.log_id == LOG


@pytest.mark.parametrize(
    ("data", "post_ids", "uploaded", "downloaded", "fail_reason"),
    [
        ({"status": "PROCESSING_UPLOAD"}, (), None, None, None),
        ({"status": "PROCESSING_DOWNLOAD", "downloaded_bytes": "12"}, (), None, 12, None),
        (
            {"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": [7300000000000000123]},
            ("7300000000000000123",),
            None,
            None,
            None,
        ),
        (
            {"status": "PUBLISH_COMPLETE", "publicly_available_post_id": ["7300000000000000124"]},
            ("7300000000000000124",),
            None,
            None,
            None,
        ),
        (
            {
                "status": "FAILED",
                "fail_reason": "picture_size_check_failed",
                "publicaly_available_post_id": [],
                "uploaded_bytes": 10000,
            },
            (),
            10000,
            None,
            "picture_size_check_failed",
        ),
    ],
)
async def test_status_keys_are_optional(
    server: tuple[str, dict[str, Canned]],
    session: aiohttp.ClientSession,
    data: dict[str, object],
    post_ids: tuple[str, ...],
    uploaded: int | None,
    downloaded: int | None,
    fail_reason: str | None,
) -> None:
    base, canned = server
    canned[STATUS] = Canned(200, _json({"data": data, "error": {"code": "ok", "message": "", "log_id": LOG}}))
    client = TikTokClient(session, base, client_key="ck", client_secret="cs")
    status = await client.fetch_status("act.x", "v_pub_file~v2-1.1")
    assert (
        status.status,
        status.post_ids,
        status.uploaded_bytes,
        status.downloaded_bytes,
        status.fail_reason,
    ) == (data["status"], post_ids, uploaded, downloaded, fail_reason)
    assert status.log_id == LOG


@pytest.mark.parametrize(
    ("event", "content", "canonical", "post_id"),
    [
        (
            "post.publish.publicly_available",
            {"publish_id": "p", "post_id": 7300000000000000123},
            "post.publish.publicly_available",
            "7300000000000000123",
        ),
        (
            "post.publish.publicaly_available",
            {"publish_id": "p", "post_id": "7300000000000000123"},
            "post.publish.publicly_available",
            "7300000000000000123",
        ),
        (
            "post.publish.no_longer_publicaly_available",
            {"publish_id": "p", "post_id": "1"},
            "post.publish.no_longer_publicly_available",
            "1",
        ),
        (
            "post.publish.no_longer_publicly_available",
            {"publish_id": "p", "publicaly_available_post_id": ["2"]},
            "post.publish.no_longer_publicly_available",
            "2",
        ),
        ("post.publish.complete", {"publish_id": "p"}, "post.publish.complete", None),
    ],
)
def test_webhook_events_accept_both_spellings(
    event: str, content: dict[str, object], canonical: str, post_id: str | None
) -> None:
    body = _json(
        {
            "client_key": "ck",
            "event": event,
            "create_time": 1615338610,
            "user_openid": "o",
            "content": json.dumps(content),
        }
    )
    parsed = parse_event(body)
    assert (parsed.event, parsed.post_id, parsed.publish_id, parsed.create_time) == (
        canonical,
        post_id,
        "p",
        1615338610,
    )


def test_webhook_event_without_optional_keys_and_bad_bodies() -> None:
    parsed = parse_event(_json({"event": "authorization.removed", "content": '{"reason": 1}'}))
    assert parsed.content == {"reason": 1} and parsed.create_time is None and parsed.post_id is None
    for bad in (b"not json", _json({"content": "{}"}), _json({"event": "e", "content": "[1]"})):
        with pytest.raises(BadEvent):
            parse_event(bad)


def test_error_of_is_pure_and_ok_at_200_is_success() -> None:
    assert answers.error_of(200, {"data": {}, "error": {"code": "ok", "message": "", "log_id": LOG}}) is None
    assert answers.error_of(200, {"access_token": "a"}) is None
    err = answers.error_of(500, {"data": {}, "error": {"code": "ok", "message": ""}})
    assert err is not None and err.message == "HTTP 500 with error code ok" and err.action is Action.retry
