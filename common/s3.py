"""Object storage (S3 API: AWS, SeaweedFS, MinIO): ranged streaming reads and multipart uploads.

``ObjectStore`` owns one aiobotocore client for its lifetime (``start``/``stop`` or ``async with``).
Reads never hold more than one piece of an object in memory: ``iter_range`` issues a ranged GET and
reads the streaming body in bounded reads, resuming with a new ranged GET if the connection drops.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiofiles
import aiohttp
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from common.errors import InvalidInput, NotFound, PipelineError, TransientError

__all__ = [
    "InvalidS3Uri",
    "ObjectInfo",
    "ObjectStore",
    "S3Error",
    "S3Location",
    "S3ObjectMissing",
    "S3Unavailable",
    "UploadResult",
    "parse_s3_uri",
]

log = structlog.get_logger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PARTS = 10_000

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class S3Error(PipelineError):
    code = "storage_error"


class S3Unavailable(S3Error, TransientError):
    """The object store could not be reached or broke the connection; trying again can help."""

    code = "storage_unavailable"


class S3ObjectMissing(S3Error, NotFound):
    """The bucket or key does not exist."""

    code = "media_not_found"
    http_status = 404


class InvalidS3Uri(S3Error, InvalidInput):
    code = "invalid_media_uri"
    http_status = 400


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    content_type: str | None


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    key: str
    size: int
    etag: str
    parts: int


def parse_s3_uri(uri: str) -> S3Location:
    """Split ``s3://bucket/key`` into bucket and key; raise ``InvalidS3Uri`` saying what is wrong."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme != "s3":
        raise InvalidS3Uri(f"media URI must start with s3://, got {uri[:80]!r}")
    bucket, slash, key = rest.partition("/")
    if not bucket:
        raise InvalidS3Uri(f"media URI has no bucket: {uri[:80]!r}")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidS3Uri(f"not a valid bucket name: {bucket[:80]!r}")
    if not slash or not key:
        raise InvalidS3Uri(f"media URI has no object key: {uri[:80]!r}")
    if len(key.encode("utf-8")) > 1024:
        raise InvalidS3Uri("object key is longer than 1024 bytes")
    return S3Location(bucket, key)


# What a call to the store can raise. aiohttp's own errors too: a body cut off mid-read surfaces as
# aiohttp.ClientPayloadError, which aiobotocore does not wrap.
_STORE_ERRORS = (ClientError, BotoCoreError, OSError, aiohttp.ClientError)


def _translate(error: Exception, bucket: str, key: str) -> S3Error:
    where = f"s3://{bucket}/{key}"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _MISSING_CODES or status == 404:
            return S3ObjectMissing(f"no such object: {where}")
        if status >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}:
            return S3Unavailable(f"object store error {code or status} for {where}")
        return S3Error(f"object store refused {where}: {code or status}")
    if isinstance(
        error, BotoConnectionError | HTTPClientError | TimeoutError | OSError | aiohttp.ClientError
    ):
        return S3Unavailable(f"object store unavailable for {where}: {error}")
    return S3Error(f"object store error for {where}: {error}")


class ObjectStore:
    """An S3 client with the operations the pipeline needs.

    Path-style addressing by default, which SeaweedFS and MinIO need. Checksums are computed only
    where S3 requires them, since S3-compatible servers differ in the newer flexible checksums.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str = "us-east-1",
        path_style: bool = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        max_pool_connections: int = 20,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = (access_key_id, secret_access_key)
        self._config = AioConfig(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max_pool_connections,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    def __repr__(self) -> str:  # never show the secret
        return f"ObjectStore(endpoint_url={self.endpoint_url!r}, region={self.region!r})"

    @property
    def client(self) -> Any:
        """The started aiobotocore S3 client."""
        if self._client is None:
            raise RuntimeError("object store not started")
        return self._client

    async def start(self) -> None:
        if self._client is not None:
            return
        stack = AsyncExitStack()
        access_key_id, secret_access_key = self._credentials
        self._client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                region_name=self.region,
                config=self._config,
            )
        )
        self._stack = stack

    async def stop(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------------------ reads

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            response = await self.client.head_object(Bucket=bucket, Key=key)
        except _STORE_ERRORS as e:
            raise _translate(e, bucket, key) from e
        return ObjectInfo(
            size=int(response["ContentLength"]),
            etag=str(response.get("ETag", "")).strip('"'),
            content_type=response.get("ContentType"),
        )

    async def iter_range(
        self,
        bucket: str,
        key: str,
        start: int,
        end_inclusive: int,
        *,
        piece_size: int = MIB,
        max_resumes: int = 3,
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``start..end_inclusive`` of the object in order, as they arrive, in pieces of
        at most ``piece_size``: one piece in memory at a time, and none joined or copied here (the
        HTTP client's read is the piece).

        A connection that breaks mid-body is resumed from the next unread byte, ``max_resumes``
        times at most.
        """
        if start < 0 or end_inclusive < start:
            raise ValueError(f"invalid byte range {start}-{end_inclusive}")
        if piece_size <= 0:
            raise ValueError("piece_size must be positive")
        position = start  # the next byte not yet yielded
        resumes = 0
        while position <= end_inclusive:
            try:
                response = await self.client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={position}-{end_inclusive}"
                )
                async with response["Body"] as body:
                    while piece := await body.read(piece_size):
                        position += len(piece)
                        yield piece
            except _STORE_ERRORS as e:
                error = _translate(e, bucket, key)
                if not isinstance(error, S3Unavailable) or resumes >= max_resumes:
                    raise error from e
                resumes += 1
                log.warning("s3_range_read_resumed", bucket=bucket, key=key, at=position)
                continue
            if position <= end_inclusive:
                # The server ended the body early (object shorter than the range asked for).
                raise S3Error(
                    f"s3://{bucket}/{key} ended at byte {position}, before the requested {end_inclusive}"
                )

    async def read_range(self, bucket: str, key: str, start: int, end_inclusive: int) -> bytes:
        """Bytes ``start..end_inclusive``, for small reads such as a container header."""
        size = end_inclusive - start + 1
        return b"".join(
            [p async for p in self.iter_range(bucket, key, start, end_inclusive, piece_size=size)]
        )

    async def presigned_get_url(self, bucket: str, key: str, expires: int = 3600) -> str:
        """A URL anyone can GET the object with for ``expires`` seconds."""
        url: str = await self.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )
        return url

    # ------------------------------------------------------------------------------------------ writes

    async def upload_stream(
        self,
        pieces: AsyncIterable[bytes],
        bucket: str,
        key: str,
        *,
        part_size: int = 8 * MIB,
        content_type: str | None = None,
    ) -> UploadResult:
        """Upload whatever ``pieces`` yields as one object, by multipart upload.

        Holds one part in memory. On any failure (including cancellation) the multipart upload is
        aborted so no parts are left behind, and the error is raised.
        """
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        extra = {"ContentType": content_type} if content_type else {}
        try:
            created = await self.client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
        except _STORE_ERRORS as e:
            raise _translate(e, bucket, key) from e
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        total = 0
        try:
            buffer = bytearray()
            async for piece in pieces:
                buffer += piece
                while len(buffer) >= part_size:
                    await self._upload_part(bucket, key, upload_id, parts, bytes(buffer[:part_size]))
                    del buffer[:part_size]
                total += len(piece)
            if buffer or not parts:
                await self._upload_part(bucket, key, upload_id, parts, bytes(buffer))
            done = await self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as e:
            await self._abort(bucket, key, upload_id)
            if isinstance(e, ClientError | BotoCoreError | OSError):
                raise _translate(e, bucket, key) from e
            raise
        log.info("s3_uploaded", bucket=bucket, key=key, size=total, parts=len(parts))
        return UploadResult(bucket, key, total, str(done.get("ETag", "")).strip('"'), len(parts))

    async def _upload_part(
        self, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], data: bytes
    ) -> None:
        number = len(parts) + 1
        if number > MAX_PARTS:
            raise S3Error(f"s3://{bucket}/{key}: more than {MAX_PARTS} parts; use a larger part_size")
        response = await self.client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except _STORE_ERRORS as e:
            # The original failure matters more; a leftover upload is cleaned by a lifecycle rule.
            log.warning("s3_abort_failed", bucket=bucket, key=key, error=str(e))

    async def upload_file(
        self,
        path: Path,
        bucket: str,
        key: str,
        *,
        part_size: int = 8 * MIB,
        content_type: str | None = None,
    ) -> UploadResult:
        """Upload a local file by multipart upload, reading it one part at a time."""

        async def read() -> AsyncIterator[bytes]:
            async with aiofiles.open(path, "rb") as f:
                while chunk := await f.read(part_size):
                    yield chunk

        return await self.upload_stream(read(), bucket, key, part_size=part_size, content_type=content_type)

    async def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str | None = None
    ) -> ObjectInfo:
        """A single PUT for small objects (thumbnails, test fixtures)."""
        extra = {"ContentType": content_type} if content_type else {}
        try:
            response = await self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except _STORE_ERRORS as e:
            raise _translate(e, bucket, key) from e
        return ObjectInfo(len(data), str(response.get("ETag", "")).strip('"'), content_type)

    async def delete(self, bucket: str, key: str) -> None:
        try:
            await self.client.delete_object(Bucket=bucket, Key=key)
        except _STORE_ERRORS as e:
            raise _translate(e, bucket, key) from e
