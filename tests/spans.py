"""The SDK's in-memory span exporter as the process's tracer provider, for in-process trace tests.

Installed once per test process without patching aiohttp/aiokafka/asyncpg (other tests keep seeing
the libraries unpatched); the code's own spans and W3C propagation are what these tests check.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common.tracing import install

EXPORTER = InMemorySpanExporter()


def in_memory_spans() -> InMemorySpanExporter:
    install(TracerProvider(), SimpleSpanProcessor(EXPORTER), instrument_libraries=False)
    EXPORTER.clear()
    return EXPORTER
