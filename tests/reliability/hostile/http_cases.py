"""The hostile HTTP corpus, as data: requests a hostile client can send to publish_service's API,
its TikTok webhook endpoint, and auth_service's management API and OAuth callback.

Each :class:`HttpCase` names the request (service, method, path, body, headers; ``auth`` adds the
API key, ``sign_webhook`` signs the body as TikTok would) and the answer it must get: the HTTP
status, the JSON ``error.code`` and a phrase of ``error.message``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.tiktok.webhooks import sign
from tests.reliability.hostile.kafka_cases import EMOJI, SQL


@dataclass(frozen=True)
class HttpCase:
    id: str
    service: str  # publish | auth
    method: str
    path: str
    status: int
    code: str
    phrase: str = ""
    body: bytes | None = None
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = True
    sign_webhook: bool = False
    signature: Callable[[bytes, str, int], str] | None = None
    """Builds the ``TikTok-Signature`` header from (body, client secret, now): a hostile variant."""


def _post(post_id: str = "http-1", **fields: Any) -> dict[str, Any]:
    return {
        "post_id": post_id,
        "account_id": "acc_http",
        "kind": "video",
        "mode": "draft",
        "video": {"uri": "s3://media/x.mp4"},
        **fields,
    }


def _deep_body(depth: int) -> bytes:
    return b'{"post_id": "deep", "metadata": ' + b"[" * depth + b"]" * depth + b"}"


def _mac(body: bytes, secret: str, signed_t: str) -> str:
    return hmac.new(secret.encode(), signed_t.encode() + b"." + body, hashlib.sha256).hexdigest()


def _respelled(spell: Callable[[int], str]) -> Callable[[bytes, str, int], str]:
    """A genuine MAC over the timestamp ``T``, sent under another spelling of the same number: int()
    read ``+T``, ``0T`` and ``1_7…`` as T, so the MAC matched though it covers other text."""
    return lambda body, secret, now: f"t={spell(now)},s={_mac(body, secret, str(now))}"


_HOOK_BODY = {"event": "post.publish.complete", "create_time": 1, "content": "{}"}


def _sig_case(case_id: str, phrase: str, signature: Callable[[bytes, str, int], str]) -> HttpCase:
    return HttpCase(
        case_id,
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        phrase,
        json_body=_HOOK_BODY,
        auth=False,
        signature=signature,
    )


SIGNATURE_CASES = [
    # compare_digest raised TypeError on a non-ASCII MAC: a 500 with a traceback.
    _sig_case("webhook_signature_non_ascii_mac", "64 hexadecimal", lambda b, s, now: "t=1,s=\u00e9"),
    _sig_case(
        "webhook_signature_non_ascii_mac_of_64",
        "64 hexadecimal",
        lambda b, s, now: f"t={now},s=" + "\u00e9" * 64,
    ),
    _sig_case("webhook_signature_mac_not_hex", "64 hexadecimal", lambda b, s, now: f"t={now},s={'z' * 64}"),
    _sig_case("webhook_signature_plus_timestamp", "decimal digits", _respelled(lambda t: f"+{t}")),
    _sig_case("webhook_signature_zero_padded_timestamp", "does not match", _respelled(lambda t: f"0{t}")),
    _sig_case(
        "webhook_signature_underscored_timestamp",
        "decimal digits",
        _respelled(lambda t: f"{str(t)[:1]}_{str(t)[1:]}"),
    ),
    _sig_case("webhook_signature_spaced_timestamp", "decimal digits", _respelled(lambda t: f" {t}")),
]


HTTP_CASES = [
    HttpCase(
        "posts_without_api_key",
        "publish",
        "POST",
        "/v1/posts",
        401,
        "unauthorized",
        "bearer API key",
        json_body=_post(),
        auth=False,
    ),
    HttpCase(
        "posts_wrong_api_key",
        "publish",
        "POST",
        "/v1/posts",
        401,
        "unauthorized",
        "bearer API key",
        json_body=_post(),
        auth=False,
        headers={"Authorization": "Bearer ' OR 1=1 --"},
    ),
    HttpCase(
        "posts_not_json", "publish", "POST", "/v1/posts", 400, "invalid_input", "not JSON", body=b"{nope"
    ),
    HttpCase(
        "posts_invalid_utf8",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "not JSON",
        body=b'{"post_id": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    ),
    HttpCase(
        "posts_bogus_charset",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "post_id: Field required",
        body=b"{}",
        headers={"Content-Type": "application/json; charset=x-hostile"},
    ),
    HttpCase(
        "posts_integer_of_5000_digits",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "not JSON",
        body=b'{"post_id": "big", "cover_index": ' + b"9" * 5000 + b"}",
    ),
    HttpCase(
        "webhook_signed_integer_of_5000_digits",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "not JSON",
        auth=False,
        sign_webhook=True,
        body=b'{"event": "x", "create_time": ' + b"7" * 5000 + b', "content": "{}"}',
    ),
    HttpCase(
        "posts_lone_surrogate",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "wrong_schema",
        "metadata.note: contains a lone UTF-16 surrogate",
        json_body=_post(metadata={"note": "\udc00"}),
    ),
    HttpCase(
        "posts_json_array",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "must be a JSON object",
        json_body=[_post()],
    ),
    HttpCase(
        "posts_5mb_caption",
        "publish",
        "POST",
        "/v1/posts",
        413,
        "payload_too_large",
        "larger than",
        json_body=_post(caption="c" * 5 * 1024 * 1024),
    ),
    HttpCase(
        "posts_deeply_nested",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "too_deep",
        "nested deeper than",
        body=_deep_body(100_000),
    ),
    HttpCase(
        "posts_nested_metadata_40",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "too_deep",
        "nested deeper than",
        body=_deep_body(40),
    ),
    HttpCase(
        "posts_nul_caption",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "wrong_schema",
        "caption: contains a NUL character",
        json_body=_post(caption="a\x00b"),
    ),
    HttpCase(
        "posts_sql_post_id",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "post_id",
        json_body=_post(post_id=SQL),
    ),
    HttpCase(
        "posts_emoji_caption_too_long",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "2202 UTF-16 code units",
        json_body=_post(caption=EMOJI * 1101),
    ),
    HttpCase(
        "posts_media_url_outside",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "must be an s3://bucket/key URI",
        json_body=_post(video={"uri": "https://cdn.invalid/a.mp4"}),
    ),
    HttpCase(
        "posts_unknown_field",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "Extra inputs are not permitted",
        json_body=_post(owner="admin"),
    ),
    HttpCase(
        "posts_long_correlation_id",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_correlation_id",
        "1 to 200 visible ASCII characters",
        json_body=_post(),
        headers={"X-Correlation-Id": "c" * 300},
    ),
    HttpCase(
        "callback_long_correlation_id",
        "auth",
        "GET",
        "/v1/oauth/callback?code=x&state=y",
        400,
        "invalid_correlation_id",
        "1 to 200 visible ASCII characters",
        headers={"X-Correlation-Id": "c" * 300},
    ),
    HttpCase(
        "delete_account_long_correlation_id",
        "auth",
        "DELETE",
        "/v1/accounts/acc_nobody",
        400,
        "invalid_correlation_id",
        "1 to 200 visible ASCII characters",
        headers={"X-Correlation-Id": "c" * 300},
    ),
    HttpCase("get_post_unknown", "publish", "GET", "/v1/posts/nope", 404, "not_found", "no post 'nope'"),
    HttpCase(
        "get_post_sql",
        "publish",
        "GET",
        "/v1/posts/%27%3B%20DROP%20TABLE%20posts%3B--",
        404,
        "not_found",
        "DROP TABLE",
    ),
    HttpCase("get_post_nul", "publish", "GET", "/v1/posts/a%00b", 404, "not_found", "no post"),
    HttpCase("cancel_post_nul", "publish", "POST", "/v1/posts/a%00b/cancel", 404, "not_found", "no post"),
    HttpCase(
        "get_post_traversal",
        "publish",
        "GET",
        "/v1/posts/..%2F..%2Fetc%2Fpasswd",
        404,
        "not_found",
        "no post",
    ),
    # TikTok webhooks
    HttpCase(
        "webhook_unsigned",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "header is missing",
        json_body={"event": "post.publish.complete"},
        auth=False,
    ),
    HttpCase(
        "webhook_garbage_signature",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "needs t= and s=",
        json_body={"event": "x"},
        headers={"TikTok-Signature": "garbage"},
        auth=False,
    ),
    HttpCase(
        "webhook_forged_signature",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "does not match",
        json_body={"event": "x"},
        auth=False,
        headers={"TikTok-Signature": sign(b'{"event": "x"}', "not-the-secret", int(time.time()))},
    ),
    HttpCase(
        "webhook_timestamp_not_a_number",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "timestamp is not a number",
        json_body={},
        headers={"TikTok-Signature": "t=abc,s=00"},
        auth=False,
    ),
    HttpCase(
        "webhook_oversized_body",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        413,
        "payload_too_large",
        "larger than",
        body=b'{"event": "' + b"x" * 2 * 1024 * 1024 + b'"}',
        auth=False,
    ),
    HttpCase(
        "webhook_signed_not_json",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "not JSON",
        body=b"\xff{not json",
        auth=False,
        sign_webhook=True,
    ),
    HttpCase(
        "webhook_signed_bad_create_time",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "create_time",
        auth=False,
        sign_webhook=True,
        json_body={"event": "post.publish.complete", "create_time": "yesterday", "content": "{}"},
    ),
    HttpCase(
        "webhook_signed_infinite_create_time",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "create_time",
        auth=False,
        sign_webhook=True,
        body=b'{"event": "post.publish.complete", "create_time": 1e999, "content": "{}"}',
    ),
    HttpCase(
        "webhook_signed_nul_publish_id",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "wrong_schema",
        "NUL character",
        auth=False,
        sign_webhook=True,
        json_body={
            "event": "post.publish.complete",
            "create_time": 1,
            "content": json.dumps({"publish_id": "v_pub\x00"}),
        },
    ),
    HttpCase(
        "webhook_signed_deep",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "too_deep",
        "nested deeper than",
        auth=False,
        sign_webhook=True,
        body=b'{"content": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ),
    HttpCase(
        "webhook_signed_content_not_object",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "no content object",
        auth=False,
        sign_webhook=True,
        json_body={"event": "x", "content": "[1]"},
    ),
    # auth_service management API and OAuth callback
    HttpCase(
        "accounts_without_api_key",
        "auth",
        "GET",
        "/v1/accounts",
        401,
        "unauthorized",
        "bearer API key",
        auth=False,
    ),
    HttpCase(
        "accounts_bad_limit",
        "auth",
        "GET",
        "/v1/accounts?limit=1;DROP",
        400,
        "invalid_input",
        "limit must be an integer",
    ),
    HttpCase(
        "accounts_bad_status",
        "auth",
        "GET",
        "/v1/accounts?status=%27%20OR%201%3D1",
        400,
        "invalid_input",
        "status must be one of",
    ),
    HttpCase(
        "accounts_nul_after", "auth", "GET", "/v1/accounts?after=a%00", 400, "invalid_input", "NUL character"
    ),
    HttpCase(
        "account_sql_id",
        "auth",
        "GET",
        "/v1/accounts/%27%20OR%20%271%27%3D%271",
        404,
        "account_not_found",
        "no account \"' OR '1'='1\"",
    ),
    HttpCase("account_nul_id", "auth", "GET", "/v1/accounts/acc%00x", 404, "account_not_found", "no account"),
    HttpCase(
        "account_nul_token_status",
        "auth",
        "GET",
        "/v1/accounts/acc%00x/token-status",
        404,
        "account_not_found",
        "no account",
    ),
    HttpCase(
        "delete_account_nul", "auth", "DELETE", "/v1/accounts/acc%00x", 404, "account_not_found", "no account"
    ),
    HttpCase(
        "delete_account_unknown",
        "auth",
        "DELETE",
        "/v1/accounts/acc_nobody",
        404,
        "account_not_found",
        "no account 'acc_nobody'",
    ),
    *SIGNATURE_CASES,
    HttpCase(
        "webhook_authorization_removed_without_openid",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "without a user_openid",
        auth=False,
        sign_webhook=True,
        json_body={"event": "authorization.removed", "create_time": 1, "content": json.dumps({"reason": 1})},
    ),
]


@dataclass(frozen=True)
class PageCase:
    """A hostile request to auth_service's browser pages (#12.13): an HTML page with the status and
    ``<code id="code">`` of the case, never a 500 and never "Account connected"."""

    id: str
    path: str
    status: int
    code: str
    phrase: str = ""


_SIG = "0" * 64
_HANDOFF = "/v1/connected?account_id=acc_victim&mode=direct"

PAGE_CASES = [
    PageCase(
        "handoff_unsigned_account_id", "/v1/connected?account_id=acc_victim", 400, "handoff_invalid", "needs"
    ),
    PageCase(
        "handoff_forged_signature",
        f"{_HANDOFF}&expires=9999999999&signature={_SIG}",
        400,
        "handoff_invalid",
        "does not match",
    ),
    PageCase(
        "handoff_expired_forged",
        f"{_HANDOFF}&expires=1&signature={_SIG}",
        400,
        "handoff_invalid",
        "does not match",
    ),
    PageCase(
        "handoff_non_ascii_signature",
        f"{_HANDOFF}&expires=9999999999&signature=%C3%A9%C3%A9",
        400,
        "handoff_invalid",
        "does not match",
    ),
    PageCase(
        "handoff_negative_expires", f"{_HANDOFF}&expires=-5&signature={_SIG}", 400, "handoff_invalid", "needs"
    ),
    PageCase(
        "handoff_5000_digit_expires",
        f"{_HANDOFF}&expires={'9' * 5000}&signature={_SIG}",
        400,
        "handoff_invalid",
        "needs",
    ),
    PageCase(
        "handoff_arabic_indic_expires",
        f"{_HANDOFF}&expires=%D9%A1%D9%A2%D9%A3&signature={_SIG}",
        400,
        "handoff_invalid",
        "needs",
    ),
    PageCase(
        "handoff_sql_account_id",
        f"/v1/connected?account_id=%27%20OR%201%3D1--&mode=direct&expires=9999999999&signature={_SIG}",
        400,
        "handoff_invalid",
        "does not match",
    ),
    PageCase(
        "handoff_mode_swapped",
        f"/v1/connected?account_id=acc_victim&mode=drafts_only&expires=9999999999&signature={_SIG}",
        400,
        "handoff_invalid",
        "does not match",
    ),
    PageCase(
        "handoff_repeated_params",
        f"{_HANDOFF}&account_id=acc_attacker&expires=9999999999&signature={_SIG}",
        400,
        "handoff_invalid",
        "does not match",
    ),
    # The OAuth callback with states nobody issued: a page naming the problem, no TikTok call, no row.
    PageCase("callback_no_state", "/v1/oauth/callback?code=abc", 400, "state_missing", "no state"),
    PageCase("callback_empty_state", "/v1/oauth/callback?code=abc&state=", 400, "state_missing", "no state"),
    PageCase("callback_forged_state", f"/v1/oauth/callback?code=abc&state={'A' * 43}", 400, "state_invalid"),
    PageCase("callback_huge_state", f"/v1/oauth/callback?code=abc&state={'s' * 6000}", 400, "state_invalid"),
    PageCase("callback_nul_state", "/v1/oauth/callback?code=abc&state=a%00b", 400, "state_invalid"),
    PageCase(
        "callback_non_ascii_state",
        "/v1/oauth/callback?code=abc&state=%C3%A9%F0%9F%98%80",
        400,
        "state_invalid",
    ),
    PageCase(
        "callback_sql_state", "/v1/oauth/callback?code=abc&state=%27%20OR%201%3D1--", 400, "state_invalid"
    ),
]
