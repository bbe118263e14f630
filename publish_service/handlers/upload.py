"""The chunk upload: PUT the chunks from the acknowledged offset, checkpointing after each one.

The acknowledged offset is saved before the next chunk goes, so a restarted worker resumes where
TikTok is. What each PUT answer means is :func:`decisions.on_put`; when the URL is gone, a status fetch
decides (:func:`decisions.after_upload_gone`) whether to wait or re-init. Every wait ends when the
service is stopping: the post is handed back at its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import structlog

from common.events import PostState, Progress
from common.s3 import S3Unavailable, parse_s3_uri
from common.tasks import sleep_or_stop
from common.tiktok.chunks import ChunkPlan
from common.tiktok.client import PutResult
from common.tiktok.errors import TikTokTransportError
from publish_service.domain import backoff, decisions
from publish_service.domain.media import Container
from publish_service.domain.post import PostPatch, PostRow
from publish_service.handlers.calls import Deferred, Failed, Steps, now

log = structlog.get_logger(__name__)

UPLOAD_URL_TTL = timedelta(minutes=60)
RETRY_CHUNK = decisions.RetryChunk("transport")


@dataclass
class Uploader:
    steps: Steps

    async def upload(self, row: PostRow) -> PostRow | None:
        s = self.steps
        post = row.request
        assert post.video is not None and row.media_size and row.chunk_size and row.total_chunks  # noqa: S101
        plan = ChunkPlan(row.media_size, row.chunk_size, row.total_chunks)
        loc = parse_s3_uri(post.video.uri)
        if row.publish_id is None or row.upload_url is None:
            return await s.repo.transition(row, PostState.validating, owner=s.owner)
        if row.upload_url_issued_at is not None and now() - row.upload_url_issued_at > UPLOAD_URL_TTL:
            return await self._upload_url_gone(row, plan, "upload_url_expired")
        upload_url = s.open_upload_url(row)
        if upload_url is None:
            return await self._upload_url_gone(row, plan, "upload_url_unreadable")
        offset = row.bytes_acked
        if offset:
            log.info(
                "upload_resumed", publish_id=row.publish_id, bytes_acked=offset, bytes_total=plan.video_size
            )
        retries = 0
        last_event = time.monotonic() - 1.0
        while offset < plan.video_size:
            if s.stopping.is_set():  # shutdown: checkpointed after the chunk in flight
                await self._checkpoint(row, offset)
                return None
            first, last = plan.bounds(plan.index_at(offset))
            answer = await self._put(row, upload_url, loc.bucket, loc.key, first, last, plan)
            if isinstance(answer, decisions.RetryChunk):
                retries += 1
                waited = await self._wait_to_retry(row, offset, retries)
                if waited is None:
                    return None
                row = waited
                continue
            if isinstance(answer, decisions.UploadGone):
                return await self._upload_url_gone(row, plan, answer.why)
            if isinstance(answer, decisions.Fail):
                raise Failed(answer.error)
            retries = 0
            if isinstance(answer, decisions.Advance):
                s.metrics.bytes_sent.inc(answer.sent)
            offset = answer.offset
            if offset >= plan.video_size:
                break
            if time.monotonic() - last_event >= 1.0:
                last_event = time.monotonic()
                progress = Progress(bytes_sent=offset, bytes_total=plan.video_size)
                patch = PostPatch(bytes_acked=offset)
                row = await s.repo.emit_update(row, owner=s.owner, progress=progress, patch=patch)
            else:
                row = await s.repo.save(row, s.owner, s.settings.lease_s, PostPatch(bytes_acked=offset))
        log.info("upload_complete", publish_id=row.publish_id, bytes=plan.video_size)
        return await s.repo.transition(
            row,
            PostState.processing,
            owner=s.owner,
            progress=Progress(bytes_sent=plan.video_size, bytes_total=plan.video_size),
            patch=PostPatch(bytes_acked=plan.video_size, failures=0, polls=0),
        )

    async def _wait_to_retry(self, row: PostRow, offset: int, retries: int) -> PostRow | None:
        """Wait before sending the chunk again, the lease renewed past the wait first (a wait can be
        longer than a short lease); None when stopping cut the wait (post handed back)."""
        wait = decisions.after_chunk_retry(retries, row.failures)
        if isinstance(wait, decisions.Defer):
            raise Deferred.of(wait)
        row = await self.steps.renew_for(row, wait)
        if await sleep_or_stop(self.steps.stopping, wait):
            await self._checkpoint(row, offset)
            return None
        return row

    async def _checkpoint(self, row: PostRow, offset: int) -> None:
        """Shutdown: hand the post back at the offset TikTok acknowledged (saved after each chunk)."""
        log.info("upload_checkpointed", bytes_acked=offset)
        await self.steps.repo.release(row, self.steps.owner, 0.0, PostPatch(bytes_acked=offset))

    async def _put(
        self, row: PostRow, upload_url: str, bucket: str, key: str, first: int, last: int, plan: ChunkPlan
    ) -> decisions.Advance | decisions.Resync | decisions.RetryChunk | decisions.UploadGone | decisions.Fail:
        """One chunk PUT and what its answer means."""
        s = self.steps
        try:
            result: PutResult = await s.tiktok.put_chunk(
                upload_url,
                self._body(row, bucket, key, first, last),
                first=first,
                last=last,
                total=plan.video_size,
                content_type=row.content_type or Container.mp4.content_type,
            )
        except TikTokTransportError as exc:
            s.metrics.chunk_retries.labels("transport").inc()
            log.warning("chunk_interrupted", first=first, error=str(exc))
            return RETRY_CHUNK
        except S3Unavailable as exc:
            failures = row.failures + 1
            raise Deferred(
                backoff.TRANSIENT.delay(failures), "storage_unavailable", PostPatch(failures=failures)
            ) from exc
        answer = decisions.on_put(result.status, result.content_range, plan, first, last)
        if isinstance(answer, decisions.RetryChunk):
            s.metrics.chunk_retries.labels(answer.reason).inc()
            log.warning("chunk_retry", first=first, http=result.status)
        elif result.status == 416:
            s.metrics.chunk_retries.labels("resync").inc()
            tiktok_at = answer.offset if isinstance(answer, decisions.Resync) else None
            log.info("upload_resync", sent_at=first, tiktok_at=tiktok_at, content_range=result.content_range)
        return answer

    async def _body(self, row: PostRow, bucket: str, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        """One chunk, streamed from a ranged GET; renews the lease while a slow chunk is under way."""
        s = self.steps
        renewed = time.monotonic()
        async for piece in s.media.stream(bucket, key, first, last, s.settings.stream_piece_bytes):
            yield piece
            if time.monotonic() - renewed > s.settings.lease_s / 3:
                renewed = time.monotonic()
                await s.repo.save(row, s.owner, s.settings.lease_s)

    async def _upload_url_gone(self, row: PostRow, plan: ChunkPlan, why: str) -> PostRow | None:
        """The upload URL no longer works. Status fetch decides whether the old publish can still
        complete (then we wait for it) or not (then, and only then, a new init)."""
        s = self.steps
        status = await s.fetch_status(row)
        log.info("upload_url_gone", why=why, tiktok_status=status.status, uploaded=status.uploaded_bytes)
        match decisions.after_upload_gone(status, plan.video_size, why, row.failures):
            case decisions.Uploaded():
                return await s.repo.transition(
                    row,
                    PostState.processing,
                    owner=s.owner,
                    progress=Progress(bytes_sent=plan.video_size, bytes_total=plan.video_size),
                    patch=PostPatch(bytes_acked=plan.video_size, polls=0),
                )
            case decisions.Defer() as wait:
                raise Deferred.of(wait)
            case decisions.Reinit():
                log.info("upload_reinit", old_publish_id=row.publish_id, why=why)
                s.metrics.reinits.inc()
                return await s.repo.transition(
                    row,
                    PostState.validating,
                    owner=s.owner,
                    patch=PostPatch(
                        publish_id=None,
                        upload_url=None,
                        upload_url_issued_at=None,
                        bytes_acked=0,
                        tiktok_status=status.status,
                    ),
                )
        raise AssertionError("unreachable")
