"""What both services' HTTP edges share: error translation, API-key auth, correlation ids, health.

Errors are translated to HTTP here and nowhere else: a :class:`PipelineError` becomes
``{"error": {"code", "message"}}`` with its ``http_status``; anything else is a logged 500 that says
nothing about internals.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from common.errors import PipelineError, Unauthorized
from common.metrics_site import serve_metrics

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[None]]
"""A readiness check raises (anything) when the dependency is not usable."""


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PipelineError as exc:
        if exc.http_status >= 500:
            log.warning("request_failed", path=request.path, error_code=exc.code, error=exc.message)
        return web.json_response(error_body(exc.code, exc.message), status=exc.http_status)
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            error_body("payload_too_large", f"the body is larger than {request.app._client_max_size} bytes"),
            status=413,
        )
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return web.json_response(
                error_body(exc.reason.lower().replace(" ", "_"), exc.reason), status=exc.status
            )
        raise
    except Exception:
        log.exception("request_crashed", path=request.path)
        return web.json_response(error_body("internal_error", "internal error"), status=500)


_CORRELATION_ID = re.compile(r"^[\x21-\x7e]{1,200}$")  # what events carry (≤ 200) and logs show safely


@web.middleware
async def correlation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Correlation-Id")
    if given and not _CORRELATION_ID.match(given):
        # Refused here, before any work: events cannot carry it, and a 500 after a TikTok call is worse.
        message = "X-Correlation-Id must be 1 to 200 visible ASCII characters"
        return web.json_response(error_body("invalid_correlation_id", message), status=400)
    correlation_id = given or uuid.uuid4().hex
    with structlog.contextvars.bound_contextvars(correlation_id=correlation_id, path=request.path):
        response = await handler(request)
    response.headers["X-Correlation-Id"] = correlation_id
    return response


def api_key_middleware(api_key: str, protected_prefixes: Iterable[str]) -> Callable[..., Any]:
    """Require ``Authorization: Bearer <api_key>`` on paths under ``protected_prefixes``."""
    prefixes = tuple(protected_prefixes)
    expected = f"Bearer {api_key}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(prefixes):
            given = request.headers.get("Authorization", "").encode()
            if not api_key or not hmac.compare_digest(given, expected):
                raise Unauthorized("a valid bearer API key is required (Authorization: Bearer <API_KEY>)")
        return await handler(request)

    return middleware


class PublicReason(RuntimeError):
    """A readiness failure with a reason /readyz may show without auth: written by our code from a
    fixed vocabulary (the kind of failure, a user or topic name, the setting to check), never the
    exception text, which can carry host names, DSNs or driver internals (that goes to the log)."""

    def __init__(self, detail: str, public_reason: str) -> None:
        super().__init__(detail)
        self.public_reason = public_reason


def add_health_routes(
    app: web.Application,
    registry: CollectorRegistry,
    checks: dict[str, ReadinessCheck],
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """``/healthz`` (the loop answers), ``/readyz`` (every check passes), ``/metrics`` (Prometheus,
    on ``metrics_host:metrics_port`` when a port is given: common.metrics_site)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        states: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
            except Exception as exc:  # noqa: BLE001 - any failure means not ready, and we say which
                # The reason goes to the log only: /readyz needs no auth, and exception text can
                # carry host names, DSNs or driver internals.
                log.warning("readiness_check_failed", check=name, error=f"{type(exc).__name__}: {exc}"[:300])
                states[name] = "failing"
                if isinstance(exc, PublicReason):
                    reasons[name] = exc.public_reason
                for part in getattr(exc, "parts", ()):  # common.tasks.NotReady names its loops
                    states[f"{name}/{part}"] = "failing"
            else:
                states[name] = "ok"
        failed = sorted(name for name, state in states.items() if state != "ok")
        if failed:
            body: dict[str, object] = {"status": "not_ready", "failed": failed, "checks": states}
            if reasons:
                body["reasons"] = reasons
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready", "checks": states})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    serve_metrics(app, registry, metrics_host, metrics_port)
