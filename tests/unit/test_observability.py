"""Metrics every service exports (process/runtime, HTTP requests, lag drop) and when tracing is on."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from common.http_metrics import observe_http
from common.metrics import SharedMetrics
from common.tracing import inject_headers, tracing_enabled
from common.web import error_middleware


def _sample(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_standard_process_and_runtime_collectors_are_exported() -> None:
    registry = CollectorRegistry()
    SharedMetrics.create(registry)
    text = generate_latest(registry).decode()
    families = ("process_resident_memory_bytes", "process_open_fds", "python_info", "python_gc_objects")
    for family in families:
        assert f"\n{family}" in text or text.startswith(family), family


def test_a_partition_reported_gone_drops_its_lag_series() -> None:
    registry = CollectorRegistry()
    shared = SharedMetrics.create(registry)
    shared.set_lag("t", 0, 5)
    shared.set_lag("t", 1, 7)
    shared.set_lag("t", 1, None)
    shared.set_lag("t", 2, None)  # never reported: nothing to drop, no error
    assert _sample(registry, "tiktok_consumer_lag", {"topic": "t", "partition": "0"}) == 5
    assert _sample(registry, "tiktok_consumer_lag", {"topic": "t", "partition": "1"}) is None


async def test_http_requests_are_counted_by_route_template_method_and_status() -> None:
    registry = CollectorRegistry()
    app = web.Application(middlewares=[error_middleware])
    observe_http(app, registry)

    async def post(request: web.Request) -> web.Response:
        if request.match_info["post_id"] == "missing":
            raise web.HTTPNotFound
        return web.json_response({"ok": True})

    app.router.add_get("/v1/posts/{post_id}", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/v1/posts/a", "/v1/posts/b", "/v1/posts/missing", "/nowhere"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    await response.read()
    finally:
        await runner.cleanup()

    route = "/v1/posts/{post_id}"
    counted = "tiktok_http_requests_total"
    assert _sample(registry, counted, {"route": route, "method": "GET", "status": "200"}) == 2
    assert _sample(registry, counted, {"route": route, "method": "GET", "status": "404"}) == 1
    assert _sample(registry, counted, {"route": "unmatched", "method": "GET", "status": "404"}) == 1
    duration = "tiktok_http_request_duration_seconds_count"
    assert _sample(registry, duration, {"route": route, "method": "GET"}) == 3


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask(environ: dict[str, str], on: bool) -> None:
    assert tracing_enabled(environ) is on


def test_trace_headers_replace_earlier_ones_and_keep_the_rest() -> None:
    before = [("type", b"x"), ("traceparent", b"00-old-old-01")]
    carrier = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    after = inject_headers(before, carrier)
    assert after == [("type", b"x"), ("traceparent", carrier["traceparent"].encode())]
    assert inject_headers(before, {}) == [("type", b"x")]
