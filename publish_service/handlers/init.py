"""Validating a post and the init call: FILE_UPLOAD (then the upload), PULL_FROM_URL video, photos.

- ``publish_id`` and ``upload_url`` are saved with the move to ``uploading``, before any byte is sent;
- a FILE_UPLOAD init may be repeated (TikTok cannot finish a post without our bytes), but only after a
  status fetch says the old one cannot complete (see ``upload.py``);
- a PULL_FROM_URL init whose answer was lost is never repeated: it waits for a webhook naming an
  unknown publish_id of this creator, and fails as ``init_outcome_unknown`` if none arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog

from common.events import ErrorInfo, PostKind, PostMode, PostState, Progress, Transfer
from common.s3 import ObjectInfo, S3Error, S3ObjectMissing, S3Unavailable, parse_s3_uri
from common.tiktok.chunks import ChunkPlan, ChunkPlanError, plan_chunks
from common.tiktok.client import CreatorInfo, InitResult
from common.tiktok.errors import TikTokTransportError
from publish_service.domain import backoff, validation
from publish_service.domain.media import MediaError, image_format, probe_video
from publish_service.domain.post import PostPatch, PostRow
from publish_service.domain.rate_window import Endpoint
from publish_service.domain.validation import Rejected
from publish_service.handlers.calls import Deferred, Failed, Steps, now

log = structlog.get_logger(__name__)

Init = Callable[[str], Awaitable[InitResult]]


@dataclass
class Initialiser:
    steps: Steps

    async def validate_and_init(self, row: PostRow) -> PostRow | None:
        s = self.steps
        post = row.request
        if row.init_in_doubt and row.publish_id is None:
            return await self._init_in_doubt(row)
        validation.check_captions(post)
        creator: CreatorInfo | None = None
        if post.mode is PostMode.direct:
            creator = await s.call(row, Endpoint.creator_info, s.tiktok.creator_info)
            validation.check_against_creator(post, creator)
        if post.kind is PostKind.photo:
            return await self._init_photo(row, creator)
        assert post.video is not None  # noqa: S101 - the event model guarantees it
        loc = parse_s3_uri(post.video.uri)
        validation.check_bucket(loc.bucket, s.settings.s3_allowed_buckets)
        info = await self._head(loc.bucket, loc.key)
        validation.check_video_size(info.size)
        try:
            video = await probe_video(s.media.reader(loc.bucket, loc.key, info.size), info.size)
        except MediaError as exc:
            raise validation.media_error(exc) from exc
        except S3Unavailable as exc:
            failures = row.failures + 1
            raise Deferred(
                backoff.TRANSIENT.delay(failures), "storage_unavailable", PostPatch(failures=failures)
            ) from exc
        validation.check_video(post, video, creator)
        media = PostPatch(
            media_size=info.size, content_type=video.container.content_type, duration_s=video.duration_s
        )
        if post.transfer is Transfer.file_upload:
            try:
                plan = plan_chunks(info.size, s.settings.chunk_size)
            except ChunkPlanError as exc:
                raise Rejected("too_large", str(exc)) from exc
            return await self._file_init(row, plan, creator, media)
        row = await s.repo.save(row, s.owner, s.settings.lease_s, media)
        url = await s.media.pull_url(loc.bucket, loc.key)
        return await self._pull_init(row, self._video_init(row, creator, validation.pull_source_info(url)))

    def _video_init(self, row: PostRow, creator: CreatorInfo | None, source: dict[str, object]) -> Init:
        tiktok = self.steps.tiktok
        if row.request.mode is PostMode.direct:
            post_info = validation.video_post_info(row.request, creator)

            async def direct(token: str) -> InitResult:
                return await tiktok.init_direct_video(token, post_info, source)

            return direct

        async def inbox(token: str) -> InitResult:
            return await tiktok.init_inbox_video(token, source)

        return inbox

    async def _head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            return await self.steps.media.head(bucket, key)
        except S3ObjectMissing as exc:
            raise Rejected("missing_object", f"s3://{bucket}/{key} does not exist") from exc
        except S3Unavailable as exc:
            raise Deferred(backoff.TRANSIENT.delay(1), "storage_unavailable") from exc
        except S3Error as exc:
            raise Rejected("media_unreadable", str(exc)) from exc

    async def _init_photo(self, row: PostRow, creator: CreatorInfo | None) -> PostRow | None:
        s = self.steps
        post = row.request
        urls = []
        for ref in post.photos or []:
            loc = parse_s3_uri(ref.uri)
            validation.check_bucket(loc.bucket, s.settings.s3_allowed_buckets)
            info = await self._head(loc.bucket, loc.key)
            validation.check_photo_size(info.size)
            try:
                image_format(await s.media.reader(loc.bucket, loc.key, info.size)(0, 12))
            except MediaError as exc:
                raise validation.media_error(exc) from exc
            urls.append(await s.media.pull_url(loc.bucket, loc.key))
        post_info = validation.photo_post_info(post, creator)
        source = validation.photo_source_info(urls, post.cover_index or 0)
        mode = validation.photo_post_mode(post)

        async def init(token: str) -> InitResult:
            return await s.tiktok.init_photo(token, mode, post_info, source)

        return await self._pull_init(row, init)

    async def _pull_init(self, row: PostRow, init: Init) -> PostRow | None:
        """A PULL_FROM_URL init: marked in doubt before it goes, so a lost answer is never repeated."""
        s = self.steps
        row = await s.repo.save(
            row, s.owner, s.settings.lease_s, PostPatch(init_in_doubt=True, init_sent_at=now())
        )
        try:
            result = await s.call(row, Endpoint.init, init)
        except TikTokTransportError as exc:
            if exc.maybe_applied:
                log.warning("pull_init_outcome_unknown", error=str(exc))
                raise Deferred(5.0, "init_in_doubt") from exc
            failures = row.failures + 1
            raise Deferred(
                backoff.TRANSIENT.delay(failures),
                "tiktok_unreachable",
                PostPatch(failures=failures, init_in_doubt=False),
            ) from exc
        except Deferred as exc:
            # TikTok answered (or we never called): the init surely did not apply.
            exc.patch["init_in_doubt"] = False
            raise
        except Failed:
            await s.repo.save(row, s.owner, s.settings.lease_s, PostPatch(init_in_doubt=False))
            raise
        s.metrics.inits.labels("pull").inc()
        return await s.repo.transition(
            row,
            PostState.processing,
            owner=s.owner,
            patch=PostPatch(publish_id=result.publish_id, init_in_doubt=False, failures=0, polls=0),
        )

    async def _init_in_doubt(self, row: PostRow) -> PostRow | None:
        """An earlier PULL init lost its answer. Never repeat it; a webhook may still name it."""
        sent = row.init_sent_at or row.updated_at
        grace = timedelta(seconds=self.steps.settings.init_doubt_grace_s)
        if now() - sent < grace:
            raise Deferred(10.0, "init_in_doubt")
        raise Failed(
            ErrorInfo(
                code="init_outcome_unknown",
                message="TikTok may have accepted the PULL_FROM_URL init but its answer was lost; "
                "it is not repeated to avoid a double post. Check the creator's profile.",
            )
        )

    async def _file_init(
        self, row: PostRow, plan: ChunkPlan, creator: CreatorInfo | None, media: PostPatch
    ) -> PostRow:
        """FILE_UPLOAD init, then ``uploading`` with publish_id and upload_url saved in the same update,
        before any byte is sent. Repeating it is safe: TikTok cannot complete a post without our bytes."""
        s = self.steps
        source = validation.file_source_info(plan.video_size, plan.chunk_size, plan.total_chunks)
        try:
            result = await s.call(row, Endpoint.init, self._video_init(row, creator, source))
        except TikTokTransportError as exc:
            failures = row.failures + 1
            raise Deferred(
                backoff.TRANSIENT.delay(failures), "tiktok_unreachable", PostPatch(failures=failures)
            ) from exc
        if not result.upload_url:
            raise Failed(
                ErrorInfo(
                    code="invalid_response",
                    message="init answered without an upload_url",
                    tiktok_log_id=result.log_id,
                )
            )
        s.metrics.inits.labels("file").inc()
        log.info("upload_initialised", publish_id=result.publish_id, chunks=plan.total_chunks)
        patch = PostPatch(
            publish_id=result.publish_id,
            upload_url=s.seal_upload_url(row, result.upload_url),
            upload_url_issued_at=now(),
            bytes_acked=0,
            failures=0,
            chunk_size=plan.chunk_size,
            total_chunks=plan.total_chunks,
        )
        patch.update(media)
        return await s.repo.transition(
            row,
            PostState.uploading,
            owner=s.owner,
            progress=Progress(bytes_sent=0, bytes_total=plan.video_size),
            patch=patch,
        )
