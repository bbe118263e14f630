"""OpenTelemetry tracing: off by default, switched on by the standard ``OTEL_*`` variables.

``configure_tracing(service_name, environ)`` is called once by each app before it builds anything.
It does nothing unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
set (or ``OTEL_TRACES_EXPORTER`` names ``otlp``), and ``OTEL_SDK_DISABLED=true`` always wins. When on,
it installs an SDK ``TracerProvider`` exporting OTLP/HTTP (the exporter itself reads the endpoint,
headers, timeout and compression from ``OTEL_EXPORTER_OTLP_*``; ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the resource) and the maintained instrumentations: aiohttp server
and client, aiokafka (``send``/``getone``/``getmany``) and asyncpg.

Kafka records carry W3C ``traceparent``/``tracestate`` headers. Records the project sends in
batches (the outbox relay) bypass aiokafka's instrumented ``send``, so ``inject_headers`` and
``extract_context`` are the helpers for those paths; the outbox stores the context with the row
(``common.outbox``) so a status event continues the trace of the change that caused it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = [
    "TRACE_HEADERS",
    "configure_tracing",
    "consuming",
    "context_from_carrier",
    "continuing",
    "current_carrier",
    "extract_context",
    "inject_headers",
    "install",
    "tracer",
    "tracing_enabled",
]

TRACE_HEADERS = ("traceparent", "tracestate")

_lock = threading.Lock()
_installed = False


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """True when the standard variables ask for traces to be exported (pure: table-tested)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()}
    if "none" in exporters:
        return False
    if "otlp" in exporters:
        return True
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def configure_tracing(service_name: str, environ: Mapping[str, str]) -> bool:
    """Install OTLP/HTTP export and the instrumentations if ``environ`` asks for it; True if on.

    Idempotent per process (the first call wins: the SDK allows one global provider).
    """
    if not tracing_enabled(environ):
        return _installed
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or service_name})
    return install(TracerProvider(resource=resource), BatchSpanProcessor(OTLPSpanExporter()))


def install(provider: TracerProvider, *processors: SpanProcessor, instrument_libraries: bool = True) -> bool:
    """Make ``provider`` (with ``processors``) the global one and instrument the libraries, once.

    ``configure_tracing`` calls it with OTLP's processor; in-process tests with an in-memory
    exporter's (and ``instrument_libraries=False`` where patching aiohttp and aiokafka for the rest
    of the test process would change what other tests see).
    """
    global _installed
    with _lock:
        if _installed:
            return True
        for processor in processors:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        if instrument_libraries:
            _instrument_libraries()
        _installed = True
        return True


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AioHttpServerInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()
    AIOKafkaInstrumentor().instrument()
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]


def tracer(name: str) -> trace.Tracer:
    """The tracer for a module (a no-op one while tracing is off)."""
    return trace.get_tracer(name)


def current_carrier() -> dict[str, str]:
    """The current context as W3C headers (empty while tracing is off or no span is active)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_carrier(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """The context ``carrier`` (``traceparent``/``tracestate``) describes; empty if none."""
    return propagate.extract(dict(carrier or {}))


def extract_context(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    """The context a Kafka record's headers carry (``traceparent``/``tracestate``)."""
    carrier = {
        name: value.decode("latin-1")
        for name, value in headers or ()
        if name in TRACE_HEADERS and value is not None
    }
    return context_from_carrier(carrier)


def inject_headers(
    headers: Sequence[tuple[str, bytes]], carrier: Mapping[str, str] | None
) -> list[tuple[str, bytes]]:
    """``headers`` with the trace headers of ``carrier`` (replacing any already there)."""
    kept = [(n, v) for n, v in headers if n not in TRACE_HEADERS]
    added = [(n, carrier[n].encode("latin-1")) for n in TRACE_HEADERS if carrier and carrier.get(n)]
    return kept + added


@contextmanager
def consuming(record: Any, name: str | None = None) -> Iterator[trace.Span]:
    """A consumer span for handling one Kafka record, continuing the trace in its headers."""
    parent = extract_context(record.headers)
    span_name = name or f"{record.topic} process"
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": record.topic,
        "messaging.kafka.destination.partition": record.partition,
        "messaging.kafka.message.offset": record.offset,
    }
    with tracer(__name__).start_as_current_span(
        span_name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextmanager
def continuing(
    carrier: Mapping[str, str] | None, name: str, attributes: Mapping[str, str] | None = None
) -> Iterator[trace.Span]:
    """A span continuing the trace ``carrier`` holds (a new trace when it holds none)."""
    with tracer(__name__).start_as_current_span(
        name, context=context_from_carrier(carrier), attributes=dict(attributes or {})
    ) as span:
        yield span
