"""§5.2 and §9.3: the chunk PUT state machine."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.sandbox.conftest import MIB, payload
from tests.waiting import wait_for
from tiktok_sandbox.config import SandboxConfig

SIZE = 12 * MIB  # two chunks of 5 MiB; the last one holds 7 MiB
CHUNK = 5 * MIB


@pytest.fixture
async def upload(world):
    r = await world.api.init_direct(world.t, SIZE, CHUNK, 2)
    assert r.code == "ok"
    return world, r.data["upload_url"], r.data["publish_id"], payload(SIZE)


async def test_put_whole_small_video_returns_201(world):
    data = payload(4 * MIB)
    r = await world.api.init_direct(world.t, len(data))
    put = await world.api.put(r.data["upload_url"], data, 0, len(data))
    assert put.status == 201
    assert put.headers["Content-Range"] == f"bytes 0-{len(data) - 1}/{len(data)}"


async def test_put_chunks_answer_206_then_201_with_progress_content_range(upload):
    world, url, _, data = upload
    first = await world.api.put(url, data[:CHUNK], 0, SIZE)
    assert first.status == 206 and first.headers["Content-Range"] == f"bytes 0-{CHUNK - 1}/{SIZE}"
    last = await world.api.put(url, data[CHUNK:], CHUNK, SIZE)
    assert last.status == 201 and last.headers["Content-Range"] == f"bytes 0-{SIZE - 1}/{SIZE}"


async def test_put_out_of_order_returns_416_with_content_range(upload):
    world, url, _, data = upload
    r = await world.api.put(url, data[CHUNK:], CHUNK, SIZE)
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{SIZE}"
    await world.api.put(url, data[:CHUNK], 0, SIZE)
    again = await world.api.put(url, data[CHUNK:], CHUNK, SIZE)
    assert again.status == 201


async def test_put_repeat_of_accepted_chunk_returns_416(upload):
    world, url, _, data = upload
    assert (await world.api.put(url, data[:CHUNK], 0, SIZE)).status == 206
    r = await world.api.put(url, data[:CHUNK], 0, SIZE)
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes 0-{CHUNK - 1}/{SIZE}"


async def test_put_after_completion_returns_416(upload):
    world, url, _, data = upload
    await world.api.upload(url, data, CHUNK)
    assert (await world.api.put(url, data[CHUNK:], CHUNK, SIZE)).status == 416


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(content_range_form="count")])
async def test_put_content_range_count_form_is_configurable(upload):
    world, url, _, data = upload
    r = await world.api.put(url, data[:CHUNK], 0, SIZE)
    assert r.headers["Content-Range"] == f"bytes 0-{CHUNK}/{SIZE}"


async def test_put_unknown_upload_id_returns_404(upload):
    world, url, _, data = upload
    r = await world.api.put(url.replace("upload_id=", "upload_id=0"), data[:CHUNK], 0, SIZE)
    assert r.status == 404


async def test_put_wrong_upload_token_returns_404(upload):
    world, url, _, data = upload
    r = await world.api.put(url + "x", data[:CHUNK], 0, SIZE)
    assert r.status == 404


async def test_put_after_one_hour_returns_403(upload):
    world, url, _, data = upload
    await world.sb.control.advance_time(3601)
    assert (await world.api.put(url, data[:CHUNK], 0, SIZE)).status == 403


async def test_put_missing_content_range_returns_400(upload):
    world, url, _, _data = upload
    async with world.api.http.put(url, data=b"x" * 10, headers={"Content-Type": "video/mp4"}) as r:
        assert r.status == 400


async def test_put_malformed_content_range_returns_400(upload):
    world, url, _, data = upload
    r = await world.api.put(url, data[:CHUNK], 0, SIZE, content_range=f"bytes=0-{CHUNK - 1}/{SIZE}")
    assert r.status == 400


async def test_put_range_total_must_equal_video_size(upload):
    world, url, _, data = upload
    r = await world.api.put(url, data[:CHUNK], 0, SIZE + 1)
    assert r.status == 400


async def test_put_range_length_must_equal_content_length(upload):
    world, url, _, data = upload
    r = await world.api.put(url, data[:CHUNK], 0, SIZE, last=CHUNK)
    assert r.status == 400


async def test_put_content_type_must_be_a_video_type(upload):
    world, url, _, data = upload
    r = await world.api.put(url, data[:CHUNK], 0, SIZE, content_type="application/octet-stream")
    assert r.status == 400
    for ctype in ("video/quicktime", "video/webm"):
        r = await world.api.put(url, data[:CHUNK], 0, SIZE, content_type=ctype)
        assert r.status in (206, 416)


async def test_put_chunk_of_wrong_length_returns_400(upload):
    world, url, _, data = upload
    r = await world.api.put(url, data[: CHUNK + 1], 0, SIZE)
    assert r.status == 400


async def test_put_needs_no_authorization_header(upload):
    world, url, _, data = upload
    assert "Authorization" not in world.api.http.headers
    assert (await world.api.put(url, data[:CHUNK], 0, SIZE)).status == 206


async def test_injected_5xx_then_retrying_the_same_chunk_succeeds(upload):
    world, url, publish_id, data = upload
    await world.sb.control.inject_fault("/video/", status=503, count=2)
    assert (await world.api.put(url, data[:CHUNK], 0, SIZE)).status == 503
    assert (await world.api.put(url, data[:CHUNK], 0, SIZE)).status == 503
    assert await world.api.upload(url, data, CHUNK) == [206, 201]
    post = await world.sb.control.post(publish_id)
    assert post["sha256"] == hashlib.sha256(data).hexdigest() and post["size"] == SIZE


@pytest.mark.parametrize(
    "sandbox_config",
    [SandboxConfig(keep_media=True), SandboxConfig(keep_media=False)],
    ids=["kept", "hashed"],
)
async def test_keep_media_decides_whether_the_bytes_are_written_the_hash_is_kept_either_way(
    upload, sandbox_config
):
    world, url, publish_id, data = upload
    assert await world.api.upload(url, data, CHUNK) == [206, 201]
    post = await world.sb.control.post(publish_id)
    assert post["sha256"] == hashlib.sha256(data).hexdigest() and post["size"] == SIZE
    path = Path(post["files"][0]["path"])
    if sandbox_config.keep_media:
        assert path.read_bytes() == data
    else:
        assert not path.exists()


async def test_connection_reset_mid_chunk_keeps_previous_progress(upload):
    world, url, publish_id, data = upload
    assert (await world.api.put(url, data[:CHUNK], 0, SIZE)).status == 206
    await world.sb.control.inject_fault("/video/", reset_after_bytes=MIB)
    # A raw socket: aiohttp's client would transparently retry the idempotent PUT.
    split = urlsplit(url)
    reader, writer = await asyncio.open_connection(split.hostname, split.port)
    head = (
        f"PUT {split.path}?{split.query} HTTP/1.1\r\nHost: {split.netloc}\r\nContent-Type: video/mp4\r\n"
        f"Content-Range: bytes {CHUNK}-{SIZE - 1}/{SIZE}\r\nContent-Length: {SIZE - CHUNK}\r\n\r\n"
    )
    writer.write(head.encode())
    with pytest.raises((ConnectionError, OSError, AssertionError)):
        for i in range(CHUNK, SIZE, 256 * 1024):
            writer.write(data[i : i + 256 * 1024])
            await writer.drain()
        answer = await reader.read()
        assert answer, "connection closed without an HTTP answer"
    writer.close()
    post = await world.sb.control.post(publish_id)
    assert post["uploaded_bytes"] == CHUNK
    again = await world.api.put(url, data[CHUNK:], CHUNK, SIZE)
    assert again.status == 201
    post = await world.sb.control.post(publish_id)
    assert post["sha256"] == hashlib.sha256(data).hexdigest() and post["size"] == SIZE


async def test_concurrent_put_on_one_upload_gets_416(upload):
    world, url, _, data = upload
    release = asyncio.Event()

    async def slow_body():
        yield data[:MIB]
        await release.wait()
        yield data[MIB:CHUNK]

    headers = {
        "Content-Type": "video/mp4",
        "Content-Range": f"bytes 0-{CHUNK - 1}/{SIZE}",
        "Content-Length": str(CHUNK),
    }

    async def first_put():
        async with world.api.http.put(url, data=slow_body(), headers=headers) as r:
            return r.status

    task = asyncio.create_task(first_put())
    store = world.sb.store
    upload_task = next(p.upload for p in store.posts.values() if p.upload)
    await wait_for(lambda: upload_task.busy, timeout=10, description="the first PUT streaming")
    second = await world.api.put(url, data[:CHUNK], 0, SIZE)
    release.set()
    assert second.status == 416
    assert await task == 206


async def test_status_reports_uploaded_bytes_while_uploading(upload):
    world, url, publish_id, data = upload
    await world.api.put(url, data[:CHUNK], 0, SIZE)
    s = await world.api.status(world.t, publish_id)
    assert s.data == {
        "status": "PROCESSING_UPLOAD",
        "uploaded_bytes": CHUNK,
    }


async def test_upload_url_expiry_fails_the_post_with_internal(upload):
    world, url, publish_id, data = upload
    await world.api.put(url, data[:CHUNK], 0, SIZE)
    await world.sb.control.advance_time(3601)
    s = await world.api.status(world.t, publish_id)
    assert s.data["status"] == "FAILED" and s.data["fail_reason"] == "internal"
