"""Object storage as the worker sees it: header reads for probing, chunk streams, pull URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from common.s3 import ObjectInfo, ObjectStore
from publish_service.domain.media import Reader

MAX_HEADER_READ = 1024 * 1024


class MediaSource:
    def __init__(self, store: ObjectStore, *, public_base_url: str | None, presign_ttl_s: int) -> None:
        self._store = store
        self._public_base = public_base_url
        self._presign_ttl = presign_ttl_s

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        return await self._store.head(bucket, key)

    def reader(self, bucket: str, key: str, size: int) -> Reader:
        """A ranged-GET ``read(offset, length)`` for the header parsers (clipped to the object)."""

        async def read(offset: int, length: int) -> bytes:
            if offset >= size or length <= 0:
                return b""
            end = min(size, offset + min(length, MAX_HEADER_READ)) - 1
            return await self._store.read_range(bucket, key, offset, end)

        return read

    def stream(self, bucket: str, key: str, first: int, last: int, piece: int) -> AsyncIterator[bytes]:
        return self._store.iter_range(bucket, key, first, last, piece_size=piece)

    async def pull_url(self, bucket: str, key: str) -> str:
        """The https URL TikTok pulls from: under the configured public base, else presigned."""
        if self._public_base:
            return f"{self._public_base}/{quote(bucket)}/{quote(key)}"
        return await self._store.presigned_get_url(bucket, key, expires=self._presign_ttl)
