"""HTTP server request metrics for an aiohttp app: by route (the template, never the raw path),
method and status.

``observe_http(app, registry)`` adds the middleware first in the chain, so the status counted is the
one the client got (error_middleware's JSON errors included), and an unmatched path is counted under
``route="unmatched"`` (raw paths would give every probe its own series).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from common.metrics import SECONDS_BUCKETS

__all__ = ["observe_http", "route_label"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The matched route's template (``/v1/posts/{post_id}``), or ``unmatched``."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None:
        return "unmatched"
    return resource.canonical


def observe_http(app: web.Application, registry: CollectorRegistry) -> None:
    requests = Counter(
        "tiktok_http_requests",
        "HTTP requests served, by route template, method and status",
        ["route", "method", "status"],
        registry=registry,
    )
    seconds = Histogram(
        "tiktok_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template and method",
        ["route", "method"],
        registry=registry,
        buckets=SECONDS_BUCKETS,
    )

    @web.middleware
    async def http_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            raise
        else:
            status = response.status
            return response
        finally:
            route = route_label(request)
            requests.labels(route, request.method, str(status)).inc()
            seconds.labels(route, request.method).observe(time.perf_counter() - started)

    app.middlewares.insert(0, http_metrics)
