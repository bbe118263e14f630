"""Envelope helpers and the middlewares every route shares (errors, call counting, faults)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import ids
from ..errors import ApiError, ControlError, OAuthError
from ..faults import FaultRule
from ..keys import STORE
from ..store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OAUTH_PATHS = ("/v2/oauth/token/", "/v2/oauth/revoke/")
UPLOAD_PATH = "/video/"
LOG_ID_HEADER = "x-tt-logid"
# What TikTok's gateway answers for a path it does not route (e.g. one without its trailing slash).
GATEWAY_NOT_FOUND = "Unsupported path(Janus)"
FAULT_RESET_AFTER = web.RequestKey("sandbox_fault_reset_after", int)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def envelope(
    store: Store, data: dict[str, Any] | None, code: str = "ok", message: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if data is not None:
        body["data"] = data
    body["error"] = {"code": code, "message": message, "log_id": ids.log_id(store.now())}
    return body


def ok(store: Store, data: dict[str, Any] | None) -> web.Response:
    return web.json_response(envelope(store, data), dumps=dumps)


def api_error(store: Store, status: int, code: str, message: str) -> web.Response:
    data: dict[str, Any] | None = {} if store.config.errors_include_data else None
    return web.json_response(envelope(store, data, code, message), status=status, dumps=dumps)


def oauth_error(store: Store, error: str, description: str) -> web.Response:
    body = {"error": error, "error_description": description, "log_id": ids.log_id(store.now())}
    return web.json_response(body, status=store.config.oauth_error_status, dumps=dumps)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate the sandbox's own exceptions into each surface's error shape."""
    store = request.app[STORE]
    try:
        return await handler(request)
    except ApiError as e:
        return api_error(store, e.http_status, e.code, e.message)
    except OAuthError as e:
        return oauth_error(store, e.error, e.description)
    except ControlError as e:
        return web.json_response({"error": e.message}, status=e.http_status)


def is_tiktok_path(path: str) -> bool:
    return path.startswith("/v2/") or path == UPLOAD_PATH


def _default_code(store: Store, path: str, status: int) -> str:
    if path in OAUTH_PATHS:
        if status >= 500:
            return "temporarily_unavailable" if status == 503 else "server_error"
        return "invalid_request"
    if status >= 500:
        return "internal_error"
    return {429: "rate_limit_exceeded", 401: "access_token_invalid"}.get(
        status, store.config.invalid_param_code
    )


def fault_answer(store: Store, path: str, rule: FaultRule) -> web.Response:
    """An injected failure, exactly as asked: its status, its shape, its headers."""
    oauth = path in OAUTH_PATHS
    status = rule.status if rule.status is not None else (store.config.oauth_error_status if oauth else 500)
    shape = rule.shape or ("oauth" if oauth else "empty" if path == UPLOAD_PATH else "wrapped")
    code = rule.error_code or _default_code(store, path, status)
    message = rule.message or "Injected fault"
    log_id = ids.log_id(store.now())
    headers = {LOG_ID_HEADER: log_id} if rule.log_id_header else {}
    if shape == "empty":
        return web.Response(status=status, headers=headers)
    if shape == "text":
        return web.Response(status=status, text=rule.body or "", content_type="text/plain", headers=headers)
    body: dict[str, Any]
    if shape == "oauth":
        body = {"error": code, "error_description": message, "log_id": log_id}
    elif shape == "flat":
        body = {"code": code, "message": message, "log_id": log_id}
    else:
        data: dict[str, Any] | None = {} if store.config.errors_include_data else None
        body = envelope(store, data, code, message)
        body["error"]["log_id"] = log_id
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def _unrouted(request: web.Request) -> bool:
    """A TikTok-host path that no route serves (a missing trailing slash, a made-up path)."""
    path = request.path
    on_tiktok_host = path.startswith("/v2/") or path.rstrip("/") == UPLOAD_PATH.rstrip("/")
    return on_tiktok_host and isinstance(request.match_info.http_exception, web.HTTPNotFound)


@web.middleware
async def calls_and_faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every TikTok-route call per (token, endpoint), then apply any injected fault."""
    if _unrouted(request):
        return web.Response(status=404, text=GATEWAY_NOT_FOUND, content_type="text/plain")
    if not is_tiktok_path(request.path):
        return await handler(request)
    store = request.app[STORE]
    token = store.bearer(request.headers.get("Authorization"))
    if request.path == UPLOAD_PATH:
        token = "upload:" + request.query.get("upload_id", "")
    store.calls.record_call(token or "-", request.path)
    rule = store.faults.take(request.path)
    if rule is None:
        return await handler(request)
    if rule.latency_ms:
        await asyncio.sleep(rule.latency_ms / 1000)
    if rule.status is not None or rule.error_code is not None or rule.shape is not None:
        return fault_answer(store, request.path, rule)
    if rule.reset_after_bytes is not None:
        request[FAULT_RESET_AFTER] = rule.reset_after_bytes
    response = await handler(request)
    if (rule.drop_fields or rule.null_fields) and isinstance(response, web.Response) and response.body:
        return _rewritten(response, rule.drop_fields or [], rule.null_fields or [])
    return response


def _rewritten(response: web.Response, drop: list[str], null: list[str]) -> web.Response:
    body = json.loads(bytes(response.body) if isinstance(response.body, bytes | bytearray) else b"{}")
    for name in drop:
        body.pop(name, None)
    for name in null:
        body[name] = None
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    return web.Response(
        status=response.status, text=dumps(body), content_type="application/json", headers=headers
    )
