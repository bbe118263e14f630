"""``/metrics`` on a port of its own (``METRICS_PORT``), so a NetworkPolicy can open it to Prometheus alone.

Unset, ``/metrics`` stays on the service's HTTP port (the behaviour before the setting existed). Set,
a second aiohttp site serves only ``/metrics`` on ``(HTTP_HOST, METRICS_PORT)`` and the main port
answers 404 there. The site starts before the app's other contexts and stops after them, so start-up
and shutdown are observable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from common.errors import ConfigError
from common.settings import EnvReader

Handler = Callable[[web.Request], Coroutine[Any, Any, web.Response]]


def read_metrics_port(env: EnvReader, http_port: int) -> int | None:
    """``METRICS_PORT``: None when unset; otherwise a TCP port other than HTTP_PORT."""
    if env.optional("METRICS_PORT") is None:
        return None
    port = env.integer("METRICS_PORT")
    if not 1 <= port <= 65535:
        raise ConfigError(f"environment variable METRICS_PORT must be a TCP port (1-65535), got {port}")
    if port == http_port:
        raise ConfigError(f"environment variable METRICS_PORT ({port}) must differ from HTTP_PORT")
    return port


def metrics_handler(registry: CollectorRegistry) -> Handler:
    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    return metrics


def serve_metrics(app: web.Application, registry: CollectorRegistry, host: str, port: int | None) -> None:
    """Route ``/metrics`` on ``app`` itself (``port`` None) or on a site of its own at ``host:port``."""
    if port is None:
        app.router.add_get("/metrics", metrics_handler(registry))
        return

    async def metrics_site(_app: web.Application) -> AsyncIterator[None]:
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", metrics_handler(registry))
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            yield
        finally:
            await runner.cleanup()

    app.cleanup_ctx.insert(0, metrics_site)
