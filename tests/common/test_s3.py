"""common.s3 against a real S3-compatible server (SeaweedFS locally, MinIO under Docker)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import structlog
import structlog.testing

from common.s3 import (
    MIB,
    InvalidS3Uri,
    ObjectStore,
    S3Location,
    S3ObjectMissing,
    parse_s3_uri,
)
from tests.conftest import object_store

pytestmark = pytest.mark.stack

SIZE = 50 * MIB + 12_345  # an odd tail, so the last part and the last piece are short
BLOCK = MIB


def block(i: int) -> bytes:
    """Block ``i`` of the test object: deterministic, incompressible."""
    return random.Random(i).randbytes(BLOCK)


def expected_slice(start: int, end_inclusive: int) -> bytes:
    first, last = start // BLOCK, end_inclusive // BLOCK
    data = b"".join(block(i) for i in range(first, last + 1))
    return data[start - first * BLOCK : end_inclusive - first * BLOCK + 1]


async def generated(size: int) -> AsyncIterator[bytes]:
    sent = 0
    i = 0
    while sent < size:
        piece = block(i)[: size - sent]
        sent += len(piece)
        i += 1
        yield piece


@pytest.fixture
async def store(stack) -> AsyncIterator[ObjectStore]:
    async with object_store(stack) as store:
        yield store


@pytest.fixture
async def big_object(store: ObjectStore, s3_bucket: str) -> tuple[str, str, str]:
    """50 MiB uploaded by multipart from a generator; returns (bucket, key, sha256)."""
    digest = hashlib.sha256()
    async for piece in generated(SIZE):
        digest.update(piece)
    started = time.monotonic()
    result = await store.upload_stream(
        generated(SIZE), s3_bucket, "videos/big.mp4", part_size=8 * MIB, content_type="video/mp4"
    )
    print(f"uploaded {SIZE} bytes in {result.parts} parts in {time.monotonic() - started:.2f}s")
    assert (result.size, result.parts) == (SIZE, 7)
    return s3_bucket, "videos/big.mp4", digest.hexdigest()


async def test_multipart_upload_reads_back_byte_exact_with_bounded_memory(
    store: ObjectStore, big_object: tuple[str, str, str]
) -> None:
    bucket, key, sha256 = big_object
    info = await store.head(bucket, key)
    assert info.size == SIZE
    assert info.content_type == "video/mp4"
    assert info.etag

    piece_size = 256 * 1024
    digest = hashlib.sha256()
    sizes: list[int] = []
    started = time.monotonic()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        async for piece in store.iter_range(bucket, key, 0, SIZE - 1, piece_size=piece_size):
            digest.update(piece)
            sizes.append(len(piece))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"read {SIZE} bytes in {len(sizes)} pieces in {time.monotonic() - started:.2f}s, peak {peak} B")

    assert digest.hexdigest() == sha256
    assert sum(sizes) == SIZE
    assert all(0 < s <= piece_size for s in sizes)
    assert peak < 4 * MIB, f"reader held {peak} bytes for a {SIZE}-byte object"


async def test_ranges_inside_the_object(store: ObjectStore, big_object: tuple[str, str, str]) -> None:
    bucket, key, _ = big_object
    assert await store.read_range(bucket, key, 0, 63) == expected_slice(0, 63)
    start, end = 3 * MIB - 17, 5 * MIB + 101  # crosses part and block boundaries
    pieces = [p async for p in store.iter_range(bucket, key, start, end, piece_size=MIB)]
    assert b"".join(pieces) == expected_slice(start, end)
    assert all(0 < len(p) <= MIB for p in pieces)
    assert await store.read_range(bucket, key, SIZE - 10, SIZE - 1) == expected_slice(SIZE - 10, SIZE - 1)


class CuttingProxy:
    """A TCP proxy on loopback to the S3 server that cuts, once, the first connection whose answer
    passes ``cut_after`` bytes: in the middle of a response body."""

    def __init__(self, upstream: str, cut_after: int) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._cut_after: int | None = cut_after
        self.cuts = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._upstream)

        async def up() -> None:
            while data := await client_r.read(65536):
                server_w.write(data)
                await server_w.drain()

        async def down() -> None:
            sent = 0
            while data := await server_r.read(65536):
                if self._cut_after is not None and sent + len(data) > self._cut_after:
                    self._cut_after = None
                    self.cuts += 1
                    client_w.transport.abort()
                    return
                sent += len(data)
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        with contextlib.suppress(OSError):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        server_w.close()
        client_w.close()


async def test_a_body_cut_midway_is_resumed_from_the_next_byte(
    stack, big_object: tuple[str, str, str]
) -> None:
    """The connection breaks inside a read, after whole pieces were yielded: the reader asks again
    from the first byte it has not yielded, and the pieces still come exact and in order."""
    bucket, key, _ = big_object
    start, end = 1_000_003, 1_000_003 + 3 * MIB + 77
    piece_size = 256 * 1024
    proxy = CuttingProxy(stack.s3_endpoint_url, cut_after=MIB + 300_000)
    with structlog.testing.capture_logs() as logs:
        async with (
            proxy as url,
            object_store(stack, endpoint_url=url) as via_proxy,
        ):
            pieces = [p async for p in via_proxy.iter_range(bucket, key, start, end, piece_size=piece_size)]
    assert proxy.cuts == 1
    resumed = [e for e in logs if e["event"] == "s3_range_read_resumed"]
    assert len(resumed) == 1, logs
    assert start < resumed[0]["at"] <= start + MIB + 300_000  # after what the cut body gave
    assert b"".join(pieces) == expected_slice(start, end)
    assert all(0 < len(p) <= piece_size for p in pieces)


async def test_missing_object_is_s3_object_missing(store: ObjectStore, s3_bucket: str) -> None:
    with pytest.raises(S3ObjectMissing) as caught:
        await store.head(s3_bucket, "no/such.mp4")
    assert caught.value.http_status == 404
    with pytest.raises(S3ObjectMissing):
        await store.read_range(s3_bucket, "no/such.mp4", 0, 10)


async def test_failed_upload_is_aborted(store: ObjectStore, s3_bucket: str) -> None:
    class SourceBroke(Exception):
        pass

    in_progress: list[str] = []

    async def breaks_after_six_mib() -> AsyncIterator[bytes]:
        for i in range(6):
            yield block(i)
        # One 5 MiB part is up by now: the server lists the upload as in progress.
        listed = await store.client.list_multipart_uploads(Bucket=s3_bucket)
        in_progress.extend(u["Key"] for u in listed.get("Uploads", []))
        raise SourceBroke

    with pytest.raises(SourceBroke):
        await store.upload_stream(breaks_after_six_mib(), s3_bucket, "broken.mp4", part_size=5 * MIB)

    assert in_progress == ["broken.mp4"]
    uploads = await store.client.list_multipart_uploads(Bucket=s3_bucket)
    assert [u for u in uploads.get("Uploads", []) if u["Key"] == "broken.mp4"] == []
    with pytest.raises(S3ObjectMissing):
        await store.head(s3_bucket, "broken.mp4")


async def test_upload_file_and_presigned_get(store: ObjectStore, s3_bucket: str, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    data = block(7)[:300_000]
    path.write_bytes(data)

    result = await store.upload_file(path, s3_bucket, "photos/1.jpg", content_type="image/jpeg")
    url = await store.presigned_get_url(s3_bucket, "photos/1.jpg", expires=300)

    assert (result.size, result.parts) == (len(data), 1)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert await response.read() == data
    assert "X-Amz-Signature=" in url


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://media/videos/a b/1.mp4") == S3Location("media", "videos/a b/1.mp4")
    assert str(parse_s3_uri("s3://media/x")) == "s3://media/x"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://media/x.mp4", "must start with s3://"),
        ("s3:/media/x.mp4", "must start with s3://"),
        ("s3://", "no bucket"),
        ("s3:///x.mp4", "no bucket"),
        ("s3://media", "no object key"),
        ("s3://media/", "no object key"),
        ("s3://Media/x.mp4", "not a valid bucket name"),
        ("s3://a/x.mp4", "not a valid bucket name"),
    ],
)
def test_parse_s3_uri_says_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(InvalidS3Uri, match=message):
        parse_s3_uri(uri)
