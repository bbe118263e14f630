"""PULL_FROM_URL: really download each URL (no redirects), streaming to disk with SHA-256 (§5.3, §9.4).

Downloads are tasks owned by the `Puller`, which the app starts and closes; closing cancels and
awaits them. Cancel, timeout and revoke reach a running download through `Store.on_abort_transfer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import aiofiles
import aiohttp
import structlog

from .models import Post
from .store import Store

log = structlog.get_logger("tiktok_sandbox.pull")


class PullFailed(Exception):
    """The media URL could not be fetched as TikTok requires."""


class Puller:
    def __init__(self, store: Store, session: aiohttp.ClientSession) -> None:
        self._store = store
        self._session = session
        self._tasks: dict[str, asyncio.Task[None]] = {}
        store.on_abort_transfer = self.abort

    def start(self, post: Post) -> None:
        post.download_started_at = self._store.now()
        task = asyncio.get_running_loop().create_task(self._run(post), name=f"pull {post.publish_id}")
        self._tasks[post.publish_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(post.publish_id, None))

    def abort(self, publish_id: str) -> None:
        task = self._tasks.get(publish_id)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def abort_all(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, post: Post) -> None:
        store = self._store
        urls = (
            [post.source_info["video_url"]]
            if post.media_type == "VIDEO"
            else list(post.source_info["photo_images"])
        )
        limit = (
            store.config.pull_max_video_bytes
            if post.media_type == "VIDEO"
            else store.config.pull_max_photo_bytes
        )
        try:
            for index, url in enumerate(urls):
                await self._fetch(post, index, url, limit)
        except (PullFailed, aiohttp.ClientError, OSError, TimeoutError) as e:
            log.info("pull_failed", publish_id=post.publish_id, error=str(e))
            store.fail(post, "photo_pull_failed" if post.media_type == "PHOTO" else "video_pull_failed")
            return
        if post.status == "PROCESSING_DOWNLOAD":
            store.transfer_finished(post)
            store.advance(post)

    async def _fetch(self, post: Post, index: int, url: str, limit: int) -> None:
        store = self._store
        received = store.new_file(post, index, source_url=url)
        post.files.append(received)
        hasher = hashlib.sha256()
        timeout = aiohttp.ClientTimeout(total=store.config.pull_timeout_s)
        async with self._session.get(url, allow_redirects=False, timeout=timeout) as resp:
            if 300 <= resp.status < 400:
                raise PullFailed(f"{url} redirects ({resp.status}); TikTok refuses redirects")
            if resp.status != 200:
                raise PullFailed(f"{url} answered {resp.status}")
            async with aiofiles.open(received.path, "wb") as f:
                async for piece in resp.content.iter_chunked(store.config.read_chunk_bytes):
                    received.size += len(piece)
                    post.downloaded_bytes += len(piece)
                    if received.size > limit:
                        raise PullFailed(f"{url} is larger than {limit} bytes")
                    hasher.update(piece)
                    await f.write(piece)
        received.sha256 = hasher.hexdigest()
