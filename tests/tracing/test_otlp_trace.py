"""One post, one trace: OTLP/HTTP export from the real service processes, read back from two receivers.

- ``jaeger``: a real Jaeger (v2 backend, in-memory storage, OTLP/HTTP in) built from the Go module
  proxy by ``scripts/tools/jaeger.sh`` and cached; the trace is read back from its query API
  (``/api/traces/{id}``), as an SRE's Jaeger UI reads it.
- ``loopback``: an aiohttp server in the test that decodes opentelemetry-proto's
  ``ExportTraceServiceRequest`` (what Jaeger, Tempo or an OpenTelemetry Collector accept on
  ``/v1/traces``) and keeps every attribute, so nothing a backend drops can hide a missing span.

The upstream producer is this test, exporting its own span to the same receiver under another
service name. Both receivers get the same assertions.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context

from common.events import EventType, PostRequestedData, encode
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, Producer
from common.settings import EnvReader
from common.tracing import inject_headers
from tests.waiting import wait_for
from tiktok_pipeline.follow import follow_post
from tiktok_pipeline.local import LocalPipeline, free_port

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.asyncio(loop_scope="module")]


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, str]


# OTLP's SpanKind numbers, which Jaeger's API names in the ``span.kind`` tag.
KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
ROOT = Path(__file__).resolve().parents[2]


class Receiver(Protocol):
    endpoint: str

    async def trace(self, trace_id: str) -> list[Span]: ...

    async def service_spans(self, service: str) -> list[Span]: ...


class Loopback:
    """A minimal OTLP/HTTP traces endpoint (protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    async def export(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in s.attributes}
                    self.spans.append(
                        Span(
                            resource.get("service.name", ""),
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            s.kind,
                            attributes,
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    async def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    async def service_spans(self, service: str) -> list[Span]:
        return [s for s in self.spans if s.service == service]


class Jaeger:
    """A Jaeger process on free loopback ports: OTLP/HTTP in, its query API out."""

    def __init__(self, binary: str, work: Path) -> None:
        self.binary = binary
        self.work = work
        otlp, query, grpc = free_port(), free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{otlp}"
        self.query = f"http://127.0.0.1:{query}"
        self.config = work / "jaeger.yaml"
        self.config.write_text(JAEGER_CONFIG.format(otlp=otlp, query=query, grpc=grpc))
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with (self.work / "jaeger.log").open("wb") as log:  # the child keeps its own descriptor
            self.process = await asyncio.create_subprocess_exec(
                self.binary, "--config", f"file:{self.config}", stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

        async def ready() -> bool:
            assert self.process is not None and self.process.returncode is None, (
                self.work / "jaeger.log"
            ).read_text()[-2000:]
            return await self._get("/api/services") is not None

        await wait_for(ready, timeout=60, description="Jaeger's query API", ignore=(aiohttp.ClientError,))

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def _get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(self.query + path) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            return await response.json()

    async def _spans(self, path: str) -> list[Span]:
        body = await self._get(path)
        return [span for t in (body or {}).get("data") or [] for span in _jaeger_spans(t)]

    async def trace(self, trace_id: str) -> list[Span]:
        return await self._spans(f"/api/traces/{trace_id}")

    async def service_spans(self, service: str) -> list[Span]:
        return await self._spans(f"/api/traces?service={service}&limit=100&lookback=1h")


def _jaeger_spans(trace: dict[str, Any]) -> list[Span]:
    services = {pid: p["serviceName"] for pid, p in trace.get("processes", {}).items()}
    spans = []
    for s in trace.get("spans", []):
        tags = {t["key"]: str(t["value"]) for t in s.get("tags", [])}
        parents = [r["spanID"] for r in s.get("references", []) if r.get("refType") == "CHILD_OF"]
        spans.append(
            Span(
                services.get(s["processID"], ""),
                s["traceID"].rjust(32, "0"),
                s["spanID"].rjust(16, "0"),
                parents[0].rjust(16, "0") if parents else "",
                s["operationName"],
                KINDS.get(tags.get("span.kind", "internal"), 1),
                tags,
            )
        )
    return spans


# Jaeger v2 is an OpenTelemetry Collector: OTLP/HTTP in, in-memory storage, the query API; nothing else
# listens, and all of it on loopback.
JAEGER_CONFIG = """
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def _value(value: object) -> str:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return str(getattr(value, kind)) if kind else ""


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["jaeger", "loopback"])
async def receiver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Receiver]:
    if request.param == "jaeger":
        # Built once per machine (about 8 minutes fresh; `make test` builds it before the suite).
        built = await asyncio.create_subprocess_exec(
            str(ROOT / "scripts" / "tools" / "jaeger.sh"), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        out, _ = await built.communicate()
        assert built.returncode == 0, "scripts/tools/jaeger.sh could not provide Jaeger"
        jaeger = Jaeger(out.decode().strip(), tmp_path_factory.mktemp("jaeger"))
        await jaeger.start()
        try:
            yield jaeger
        finally:
            await jaeger.stop()
        return
    found = Loopback()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", found.export)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", found.port).start()
    try:
        yield found
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pipeline(stack, receiver, tmp_path_factory) -> AsyncIterator[LocalPipeline]:
    tracing = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a fraction of a second
    }
    local = LocalPipeline(
        EnvReader({**stack.env(), "S3_BUCKET": "media"}), tmp_path_factory.mktemp("traced"), extra_env=tracing
    )
    try:
        await local.start()
        yield local
    finally:
        await local.stop()


async def _video(path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=720x1280:rate=30:duration=2",
        "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    assert await process.wait() == 0


def _url(span: Span) -> str:
    return span.attributes.get("url.full") or span.attributes.get("http.url") or ""


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[str]:
    names = []
    current = by_id.get(span.parent_id)
    while current is not None:
        names.append(current.name)
        current = by_id.get(current.parent_id)
    return names


async def test_one_post_is_one_trace_from_the_producer_through_publish_service(
    pipeline: LocalPipeline, receiver: Receiver, tmp_path: Path
) -> None:
    account_id = await pipeline.connect_creator()
    video = tmp_path / "clip.mp4"
    await _video(video)
    key = f"traced/{uuid.uuid4().hex[:8]}.mp4"
    async with pipeline.object_store() as store:
        await store.upload_file(video, pipeline.bucket, key, content_type="video/mp4")
    post_id = f"traced-{uuid.uuid4().hex[:8]}"
    request = PostRequestedData(
        post_id=post_id,
        account_id=account_id,
        kind="video",
        mode="direct",
        video={"uri": f"s3://{pipeline.bucket}/{key}"},
        caption="traced #test",
        privacy_level="SELF_ONLY",
    )

    # The upstream producer: its own tracer provider and service name, exporting to the receiver.
    provider = TracerProvider(resource=Resource.create({"service.name": "upstream-producer"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces"))
    )
    value, headers = encode(EventType.post_requested, request, correlation_id=post_id)
    with provider.get_tracer("test").start_as_current_span("request a post", kind=SpanKind.PRODUCER) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=set_span_in_context(span))
        async with Producer(pipeline.kafka, client_id="upstream") as producer:
            await producer.send(
                pipeline.prefix + TOPIC_POST_REQUESTED, account_id, value, inject_headers(headers, carrier)
            )
    provider.shutdown()
    trace_id = f"{span.get_span_context().trace_id:032x}"

    timeline = await follow_post(pipeline.kafka, pipeline.prefix + TOPIC_POST_STATUS, post_id, within=180)
    assert timeline.last is not None and timeline.last.state == "published", timeline.last

    async def complete() -> bool:
        names = {s.name for s in await receiver.trace(trace_id)}
        return {"request a post", "post uploading", "post processing"} <= names and any(
            n.endswith(f"{TOPIC_POST_STATUS} publish") for n in names
        )

    await wait_for(complete, timeout=30, description="the post's spans at the receiver")
    spans = await receiver.trace(trace_id)
    by_id = {s.span_id: s for s in spans}
    assert {s.service for s in spans} >= {"upstream-producer", "publish_service"}
    names = [s.name for s in spans if s.service == "publish_service"]
    assert f"{pipeline.prefix}{TOPIC_POST_REQUESTED} process" in names  # intake continued the trace
    assert {"publish post", "post validating", "post uploading", "post processing"} <= set(names)

    def http(method: str) -> list[Span]:
        return [
            s
            for s in spans
            if s.service == "publish_service"
            and s.kind == 3  # CLIENT
            and (s.attributes.get("http.request.method") or s.attributes.get("http.method")) == method
        ]

    puts = http("PUT")
    assert puts, "no chunk PUT in the trace"
    assert all("post uploading" in _ancestors(s, by_id) for s in puts)  # inside the upload step
    # The ranged S3 reads each chunk streams from (aiobotocore speaks S3 through aiohttp's client).
    reads = [s for s in http("GET") if f"/{pipeline.bucket}/{key}" in _url(s)]
    assert any("post uploading" in _ancestors(s, by_id) for s in reads), [_url(s) for s in http("GET")]
    polls = [s for s in http("POST") if "post processing" in _ancestors(s, by_id)]
    assert polls, "no status poll in the trace"
    # The status events the post caused continue the trace too (the outbox carried its context).
    status = [s for s in spans if s.name == f"{pipeline.prefix}{TOPIC_POST_STATUS} publish"]
    assert status and all(by_id.get(s.parent_id) is not None for s in status)
    # The producer's span is the root of it all.
    root = next(s for s in spans if s.name == "request a post")
    assert root.service == "upstream-producer"
    assert root.parent_id == ""  # no parent: the trace starts at the producer
    # Connecting the creator (before the post) was auth_service's own trace, served over HTTP.
    connect = [s for s in await receiver.service_spans("auth_service") if s.kind == 2]  # SERVER
    assert connect and all(s.trace_id != trace_id for s in connect)
