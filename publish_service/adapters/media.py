"""Object storage as the worker sees it: header reads for probing, chunk streams, pull URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from common.s3 import ObjectInfo, ObjectStore
from publish_service.domain.media import Reader

MAX_HEADER_READ = 1024 * 1024
READ_AHEAD = 64 * 1024


class MediaSource:
    def __init__(self, store: ObjectStore, *, public_base_url: str | None, presign_ttl_s: int) -> None:
        self._store = store
        self._public_base = public_base_url
        self._presign_ttl = presign_ttl_s

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        return await self._store.head(bucket, key)

    def reader(self, bucket: str, key: str, size: int) -> Reader:
        """A ``read(offset, length)`` for the header parsers (clipped to the object), by ranged GETs
        of at least ``READ_AHEAD`` bytes: the parsers' many small reads of neighbouring box headers
        are served from the last GET (an MP4 probe takes two GETs, not eight)."""
        window_start, window = 0, b""

        async def read(offset: int, length: int) -> bytes:
            nonlocal window_start, window
            if offset >= size or length <= 0:
                return b""
            length = min(length, MAX_HEADER_READ, size - offset)
            at = offset - window_start
            if at >= 0 and at + length <= len(window):
                return window[at : at + length]
            end = min(size, offset + max(length, READ_AHEAD)) - 1
            window_start, window = offset, await self._store.read_range(bucket, key, offset, end)
            return window[:length]

        return read

    def stream(self, bucket: str, key: str, first: int, last: int, piece: int) -> AsyncIterator[bytes]:
        return self._store.iter_range(bucket, key, first, last, piece_size=piece)

    async def pull_url(self, bucket: str, key: str) -> str:
        """The https URL TikTok pulls from: under the configured public base, else presigned."""
        if self._public_base:
            return f"{self._public_base}/{quote(bucket)}/{quote(key)}"
        return await self._store.presigned_get_url(bucket, key, expires=self._presign_ttl)
