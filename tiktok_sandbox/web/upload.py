"""`PUT /video/?upload_id=&upload_token=`: the chunk state machine of §9.3.

Bytes stream from the socket to disk in `read_chunk_bytes` pieces and are hashed on the way, so a
chunk is never held whole in memory. A chunk counts only once all of it has arrived: the running
SHA-256 is forked per chunk and committed at the end, and a cut-off chunk leaves the task where it was.

Two PUTs on one upload at once: the second gets 416 with the current Content-Range (chunks are
sequential by rule, so a concurrent one is out of order by definition).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiofiles
from aiohttp import web

from .. import rules
from ..keys import STORE
from ..models import UploadTask
from ..store import Store
from .common import FAULT_RESET_AFTER, dumps

CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
DRAIN_LIMIT = rules.MAX_FINAL_CHUNK + 1024 * 1024


class _Discarded:
    """Where chunks go when ``keep_media`` is off: only the hash and the counts are kept."""

    async def seek(self, offset: int) -> None:
        return None

    async def write(self, data: bytes) -> None:
        return None

    async def truncate(self, size: int) -> None:
        return None


@asynccontextmanager
async def _discard() -> AsyncIterator[_Discarded]:
    yield _Discarded()


def _progress(store: Store, task: UploadTask) -> str:
    if store.config.content_range_form == "count":
        return f"bytes 0-{task.received}/{task.video_size}"
    if task.received == 0:
        return f"bytes */{task.video_size}"
    return f"bytes 0-{task.received - 1}/{task.video_size}"


async def _drain(request: web.Request) -> None:
    """Read (and drop) an unread body so the client sees our answer, not a reset, while still sending."""
    length = request.content_length
    if length is not None and length > DRAIN_LIMIT:
        return
    async for _ in request.content.iter_chunked(256 * 1024):
        pass


async def _answer(
    request: web.Request, status: int, message: str, task: UploadTask | None = None
) -> web.Response:
    await _drain(request)
    store = request.app[STORE]
    headers = {"Content-Range": _progress(store, task)} if task is not None else {}
    if store.config.upload_response_body == "none":  # TikTok documents no body (§5.2)
        return web.Response(status=status, headers=headers)
    body = dumps({"error": {"code": "ok" if status < 300 else str(status), "message": message}})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


async def put_chunk(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    post = store.uploads.get(request.query.get("upload_id", ""))
    task = post.upload if post is not None else None
    token = request.query.get("upload_token", "")
    if post is None or task is None or not secrets.compare_digest(token, task.upload_token):
        return await _answer(request, 404, "No upload task matches this upload_url.")
    store.advance(post)
    if store.now() > task.expires_at:
        return await _answer(request, 403, "The upload_url has expired.", task)
    if post.status == "FAILED":
        return await _answer(request, 404, "The upload task no longer exists.", task)
    match = CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
    length = request.content_length
    if match is None or length is None:
        return await _answer(request, 400, "Content-Range and Content-Length are required.", task)
    first, last, total = (int(g) for g in match.groups())
    if last < first or last - first + 1 != length or total != task.video_size:
        return await _answer(request, 400, "Content-Range does not match the body or the video size.", task)
    if store.config.upload_content_types == "video" and request.content_type not in VIDEO_TYPES:
        return await _answer(
            request, 400, "Content-Type must be video/mp4, video/quicktime or video/webm.", task
        )
    if task.busy or first != task.received:
        return await _answer(request, 416, "Content-Range does not match the upload progress.", task)
    expected = rules.expected_chunk_length(
        task.next_index, task.video_size, task.chunk_size, task.total_chunks
    )
    if length != expected:
        return await _answer(request, 400, f"This chunk must be {expected} bytes.", task)

    task.busy = True
    try:
        received = await _stream_chunk(request, task, first, length)
    finally:
        task.busy = False
    if received is None:  # injected fault: cut the connection mid-body, after releasing the task
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)
    if received != length:
        return await _answer(request, 400, "Content-Length does not match the body.", task)
    task.file.size = task.received
    if not task.complete:
        return await _answer(request, 206, "", task)
    task.file.sha256 = task.hasher.hexdigest()
    store.transfer_finished(post)
    return await _answer(request, 201, "", task)


async def _stream_chunk(request: web.Request, task: UploadTask, offset: int, length: int) -> int | None:
    """Write one chunk at `offset`; commit progress and hash only if exactly `length` bytes arrived."""
    store = request.app[STORE]
    reset_after = request.get(FAULT_RESET_AFTER)
    hasher = task.hasher.copy()
    path: Path = task.file.path
    count = 0
    # Nothing is kept from a cut-off first chunk, so offset 0 may start the file afresh.
    opened = aiofiles.open(path, "wb" if offset == 0 else "r+b") if store.config.keep_media else _discard()
    async with opened as f:
        await f.seek(offset)
        async for piece in request.content.iter_chunked(store.config.read_chunk_bytes):
            if reset_after is not None and count + len(piece) >= reset_after:
                return None
            count += len(piece)
            if count > length:
                return count
            hasher.update(piece)
            await f.write(piece)
        if count == length:
            await f.truncate(offset + length)
    if count == length:
        task.hasher = hasher
        task.received += length
        task.next_index += 1
    return count
