# ruff: noqa: T201, ASYNC220  (a command-line benchmark: prints a table, runs its own sink process)
"""The plain copy: the upload path's physical limit on this machine, for the upload benchmark's ratios.

    python bench/plain_copy.py [--size-mb 500] [--concurrent 50 --concurrent-size-mb 200] [--chunk-mib 10]

What publish_service does for a FILE_UPLOAD, with nothing else: ranged GETs of one chunk each from
the same SeaweedFS, each body streamed straight into a PUT with TikTok's ``Content-Range`` header, to
a sink in its own process (``--sink PORT``) that hashes every byte it receives. Chunks of one object go
one after another, as they must to TikTok; objects go side by side. No database, no Kafka, no status
events, no retries: whatever the service takes beyond this is its own overhead.

``bench/publish_upload.py`` imports ``Sink`` and ``copy_objects`` and runs this on the same objects in
the same run, so its figures are printed as a ratio to this one. Run alone, it stages its own objects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.s3 import ObjectStore  # noqa: E402
from tiktok_pipeline.local import free_port  # noqa: E402

MB = 1000 * 1000
MIB = 1024 * 1024
PIECE = MIB  # the copy reads up to this much at a time (publish_service streams 256 KiB pieces)


# ---------------------------------------------------------------------------------------------- sink


def sink_app() -> web.Application:
    """PUT /{name}: hash the body into the running digest of ``name``; GET /{name}: size and digest."""
    digests: dict[str, Any] = {}
    sizes: dict[str, int] = {}

    async def put(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        digest = digests.setdefault(name, hashlib.sha256())
        received = 0
        async for piece in request.content.iter_any():
            digest.update(piece)
            received += len(piece)
        sizes[name] = sizes.get(name, 0) + received
        return web.Response(status=206)

    async def get(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in digests:
            raise web.HTTPNotFound()
        return web.json_response({"size": sizes[name], "sha256": digests[name].hexdigest()})

    app = web.Application(client_max_size=0)
    app.router.add_put("/{name}", put)
    app.router.add_get("/{name}", get)
    return app


async def wait_answering(url: str, status: int, what: str) -> None:
    """Poll ``url`` until it answers ``status`` (10 s at most); SystemExit naming ``what`` otherwise."""
    async with aiohttp.ClientSession(trust_env=False) as session:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == status:
                        return
            await asyncio.sleep(0.05)
    raise SystemExit(f"{what} did not start")


class Sink:
    """The sink as its own process: ``async with Sink() as sink: sink.url``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Sink:
        self._process = subprocess.Popen(  # noqa: S603 - this very file, by its path
            [sys.executable, __file__, "--sink", str(self.port)], stdin=subprocess.DEVNULL
        )
        await wait_answering(f"{self.url}/none", 404, "the plain copy's sink")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)

    async def digest(self, session: aiohttp.ClientSession, name: str) -> tuple[int, str]:
        async with session.get(f"{self.url}/{name}") as response:
            response.raise_for_status()
            body = await response.json()
            return int(body["size"]), str(body["sha256"])


# ---------------------------------------------------------------------------------------------- copy


@dataclass(frozen=True)
class Copied:
    objects: int
    bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds


async def _copy_one(
    client: Any, session: aiohttp.ClientSession, bucket: str, key: str, size: int, chunk: int, url: str
) -> None:
    for first in range(0, size, chunk):
        last = min(first + chunk, size) - 1
        response = await client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        async with response["Body"] as body:

            async def pieces(body: Any = body) -> AsyncIterator[bytes]:
                while piece := await body.read(PIECE):
                    yield piece

            headers = {
                "Content-Length": str(last - first + 1),
                "Content-Range": f"bytes {first}-{last}/{size}",
            }
            async with session.put(url, data=pieces(), headers=headers) as answer:
                answer.raise_for_status()
                await answer.read()


async def copy_objects(
    store: ObjectStore, sink: Sink, bucket: str, objects: Sequence[tuple[str, int]], chunk: int, run: str
) -> Copied:
    """Copy every ``(key, size)`` side by side, each chunk by chunk; the sink names them ``run-i``."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _copy_one(store.client, session, bucket, key, size, chunk, f"{sink.url}/{run}-{i}")
                for i, (key, size) in enumerate(objects)
            )
        )
        seconds = time.perf_counter() - started
    return Copied(len(objects), sum(size for _, size in objects), seconds)


async def verify(sink: Sink, run: str, expected: Sequence[tuple[int, str]]) -> None:
    """Raise unless the sink received each object whole: ``expected[i]`` is ``(size, sha256)``."""
    async with aiohttp.ClientSession() as session:
        for i, want in enumerate(expected):
            got = await sink.digest(session, f"{run}-{i}")
            if got != want:
                raise SystemExit(f"plain copy {run}-{i}: the sink got {got}, expected {want}")


# ---------------------------------------------------------------------------------------------- alone


async def _stage(store: ObjectStore, bucket: str, key: str, size: int) -> tuple[int, str]:
    digest = hashlib.sha256()

    async def pieces() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            piece = os.urandom(min(8 * MIB, left))
            digest.update(piece)
            left -= len(piece)
            yield piece

    await store.upload_stream(pieces(), bucket, key, part_size=16 * MIB)
    return size, digest.hexdigest()


async def main(size_mb: int, concurrent: int, concurrent_size_mb: int, chunk_mib: int) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from publish_upload import stack

    endpoints = stack()
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    store = ObjectStore(
        endpoint_url=endpoints.s3_endpoint_url,
        access_key_id=endpoints.s3_access_key_id,
        secret_access_key=endpoints.s3_secret_access_key,
        region=endpoints.s3_region,
        max_pool_connections=max(20, concurrent * 2),
    )
    async with store, Sink() as sink:
        await store.client.create_bucket(Bucket=bucket)
        try:
            runs = [("single", [("one", size_mb * MB)])]
            if concurrent:
                runs.append(("concurrent", [(f"c{i}", concurrent_size_mb * MB) for i in range(concurrent)]))
            for run, objects in runs:
                expected = [await _stage(store, bucket, key, size) for key, size in objects]
                copied = await copy_objects(store, sink, bucket, objects, chunk_mib * MIB, run)
                await verify(sink, run, expected)
                print(
                    f"plain copy, {run}: {copied.objects} x {objects[0][1] // MB} MB"
                    f" in {copied.seconds:.1f} s, {copied.mb_per_s:.0f} MB/s (bytes verified at the sink)"
                )
        finally:
            listed = await store.client.list_objects_v2(Bucket=bucket)
            for o in listed.get("Contents", []):
                await store.delete(bucket, o["Key"])
            await store.client.delete_bucket(Bucket=bucket)


def serve_sink(port: int) -> None:
    web.run_app(sink_app(), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sink", type=int, metavar="PORT", help="run only the sink, on PORT")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--concurrent-size-mb", type=int, default=200)
    parser.add_argument("--chunk-mib", type=int, default=10)
    args = parser.parse_args()
    if args.sink:
        serve_sink(args.sink)
    else:
        asyncio.run(main(args.size_mb, args.concurrent, args.concurrent_size_mb, args.chunk_mib))
