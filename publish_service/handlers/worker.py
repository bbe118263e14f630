"""The worker: claims due posts and drives each through its state machine.

One step per state. A step either moves the post on (and the loop continues with the new row) or
gives the lease back with a delay (waiting for TikTok, a rate-limit slot, a new token, a schedule).
Safety rules that the code below keeps:

- ``publish_id``, ``upload_url`` and the acknowledged offset are saved before any byte they cover
  is sent, so a restarted worker resumes where TikTok is, not where it thought it was;
- a FILE_UPLOAD init may be repeated (TikTok cannot finish a post without our bytes), but only after
  a status fetch says the old one cannot complete;
- a PULL_FROM_URL init whose answer was lost is never repeated: it waits for a webhook naming an
  unknown publish_id of this creator, and fails as ``init_outcome_unknown`` if none arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog

from common.cipher import DecryptionFailed, TokenCipher
from common.events import ErrorInfo, PostKind, PostMode, PostState, Progress, Transfer
from common.s3 import S3Error, S3ObjectMissing, S3Unavailable, parse_s3_uri
from common.tasks import sleep_or_stop
from common.tiktok.chunks import ChunkPlan, ChunkPlanError, plan_chunks, resync_offset
from common.tiktok.client import CreatorInfo, PublishStatus, PutResult, TikTokClient
from common.tiktok.errors import Action, TikTokError, TikTokTransportError
from publish_service.adapters.media import MediaSource
from publish_service.adapters.repository import LeaseLost, PostRow, Repository
from publish_service.domain import backoff, validation
from publish_service.domain.media import Container, MediaError, image_format, probe_video
from publish_service.domain.rate_window import Endpoint
from publish_service.domain.states import is_legal
from publish_service.domain.validation import Rejected
from publish_service.metrics import Metrics
from publish_service.settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")

UPLOAD_URL_TTL = timedelta(minutes=60)
MAX_CHUNK_RETRIES = 8
MAX_PUBLISH_ATTEMPTS = 3
RETRYABLE_FAIL_REASONS = frozenset({"internal", "video_pull_failed", "photo_pull_failed"})
SHORT_WAIT_S = 3.0  # a rate-limit wait this short is slept through instead of giving the lease back


class Defer(Exception):
    def __init__(self, delay_s: float, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason
        self.fields = fields


class Failed(Exception):
    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


def _now() -> datetime:
    return datetime.now(UTC)


def _tiktok_error(exc: TikTokError) -> ErrorInfo:
    # An answer without a TikTok code (empty, text) keeps our category, e.g. tiktok_config_error.
    return ErrorInfo(
        code=exc.tiktok_code or exc.code,
        message=exc.message,
        retryable=exc.retriable,
        tiktok_log_id=exc.log_id,
    )


@dataclass
class Worker:
    repo: Repository
    tiktok: TikTokClient
    media: MediaSource
    cipher: TokenCipher
    settings: Settings
    stopping: asyncio.Event
    metrics: Metrics

    @property
    def _cap_backoff(self) -> backoff.Backoff:
        return backoff.Backoff(
            initial=self.settings.cap_retry_s, factor=2.0, maximum=max(self.settings.cap_retry_s, 6 * 3600.0)
        )

    @property
    def owner(self) -> str:
        return self.settings.instance_id

    # ------------------------------------------------------------------------------ loop

    async def run(self, number: int) -> None:
        log.info("worker_started", worker=number)
        while not self.stopping.is_set():
            row = await self.repo.claim(self.owner, self.settings.lease_s)
            if row is None:
                if await sleep_or_stop(self.stopping, self.settings.claim_idle_s):
                    return
                continue
            with structlog.contextvars.bound_contextvars(
                post_id=row.post_id, account_id=row.account_id, correlation_id=row.correlation_id
            ):
                self.metrics.busy_workers.inc()
                try:
                    await self.work(row)
                finally:
                    self.metrics.busy_workers.dec()

    async def work(self, row: PostRow) -> None:
        """Drive one claimed post until it waits or ends; never raises (the loop must go on)."""
        current: PostRow | None = row
        try:
            while current is not None and not self.stopping.is_set():
                current = await self._step(current)
            if current is not None:
                await self.repo.release(current, self.owner, 0.0)
        except LeaseLost as exc:
            log.warning("post_lease_lost", error=str(exc))
        except Defer as d:
            self.metrics.deferred.labels(d.reason).inc()
            log.info("post_deferred", reason=d.reason, delay_s=round(d.delay_s, 1))
            await self.repo.release(row, self.owner, d.delay_s, **d.fields)
        except Exception as exc:
            failures = row.failures + 1
            delay = backoff.TRANSIENT.delay(failures)
            log.exception(
                "post_step_crashed", error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 1)
            )
            try:
                await self.repo.release(row, self.owner, delay, failures=failures)
            except Exception:
                log.exception("post_release_failed")

    async def _step(self, row: PostRow) -> PostRow | None:
        """Run the step for the row's state; the next row to work on, or None when released."""
        try:
            match row.state:
                case PostState.received | PostState.scheduled:
                    return await self.repo.transition(row, PostState.validating, owner=self.owner)
                case PostState.validating:
                    return await self._validate_and_init(row)
                case PostState.uploading:
                    return await self._upload(row)
                case PostState.processing:
                    return await self._poll(row)
                case PostState.published if row.awaiting_post_id:
                    return await self._watch_post_id(row)
                case _:
                    await self.repo.release(row, self.owner, 0.0)
                    return None
        except Rejected as r:
            self.metrics.finished.labels("rejected").inc()
            log.info("post_rejected", error_code=r.code, reason=r.message)
            error = ErrorInfo(code=r.code, message=r.message)
            new = await self.repo.transition(row, PostState.rejected, owner=self.owner, error=error)
            await self.repo.release(new, self.owner, 0.0)
            return None
        except Failed as f:
            if not is_legal(row.state, PostState.failed):
                # Watching a published post for its public id, and TikTok refuses further calls.
                log.info("post_id_watch_ended", error_code=f.error.code)
                await self.repo.release(row, self.owner, 0.0, awaiting_post_id=False)
                return None
            self.metrics.finished.labels("failed").inc()
            log.info(
                "post_failed", error_code=f.error.code, reason=f.error.message, log_id=f.error.tiktok_log_id
            )
            latest = await self.repo.get(row.post_id)
            base = latest if latest is not None and latest.state is row.state else row
            new = await self.repo.transition(base, PostState.failed, owner=self.owner, error=f.error)
            await self.repo.release(new, self.owner, 0.0)
            return None

    # ------------------------------------------------------------------------------ TikTok calls

    async def _token(self, row: PostRow) -> tuple[str, int]:
        account = await self.repo.account_token(row.account_id)
        if account is not None and account.status in ("disconnected", "reauth_required"):
            raise Failed(
                ErrorInfo(code=f"account_{account.status}", message="the creator must reconnect the account")
            )
        if account is None:
            # The request may have overtaken the account's connect event (auth_service's outbox, then
            # Kafka): wait for it (state sync wakes the post), and only then call the account unknown.
            waited = (_now() - row.created_at).total_seconds()
            grace = self.settings.unknown_account_grace_s
            if waited >= grace:
                raise Rejected(
                    "unknown_account",
                    f"account {row.account_id!r} is not connected "
                    f"(no account or token event in {grace:.0f}s)",
                )
            raise Defer(grace - waited, "account_unknown", awaiting_token_version=-1)
        if account.ciphertext is None:
            raise Defer(self.settings.token_wait_s, "no_token", awaiting_token_version=-1)
        if account.expires_at is not None and account.expires_at <= _now():
            await self.repo.request_refresh(row.account_id, account.token_version, "access_token_expired")
            raise Defer(
                self.settings.token_wait_s, "token_expired", awaiting_token_version=account.token_version
            )
        try:
            token = self.cipher.decrypt(account.ciphertext, account_id=row.account_id, purpose="transport")
        except DecryptionFailed as exc:
            log.warning("token_decryption_failed", error=str(exc))
            raise Defer(
                self.settings.token_wait_s,
                "token_undecryptable",
                awaiting_token_version=account.token_version,
            ) from exc
        return token, account.token_version

    async def _slot(self, row: PostRow, endpoint: Endpoint) -> None:
        while True:
            wait = await self.repo.acquire_slot(row.account_id, endpoint)
            if wait <= 0:
                return
            self.metrics.rate_waits.labels(endpoint.value).inc()
            if wait > SHORT_WAIT_S:
                raise Defer(wait, f"rate_window_{endpoint.value}")
            await asyncio.sleep(wait)

    async def _call(self, row: PostRow, endpoint: Endpoint, call: Callable[[str], Awaitable[T]]) -> T:
        """One rate-limited TikTok call with the account's token; TikTok's verdict as Defer/Failed."""
        token, version = await self._token(row)
        await self._slot(row, endpoint)
        try:
            return await call(token)
        except TikTokError as exc:
            self.metrics.tiktok_errors.labels(exc.endpoint, exc.label).inc()
            log.warning(
                "tiktok_error",
                endpoint=exc.endpoint,
                error_code=exc.label,
                log_id=exc.log_id,
                http=exc.status,
            )
            match exc.action:
                case Action.refresh:
                    await self.repo.request_refresh(row.account_id, version, exc.tiktok_code)
                    raise Defer(
                        self.settings.token_wait_s, "token_invalid", awaiting_token_version=version
                    ) from exc
                case Action.retry:
                    failures = row.failures + 1
                    policy = (
                        backoff.RATE_LIMITED
                        if exc.tiktok_code == "rate_limit_exceeded"
                        else backoff.TRANSIENT
                    )
                    if failures > backoff.MAX_TRANSIENT_ATTEMPTS:
                        raise Failed(_tiktok_error(exc)) from exc
                    raise Defer(policy.delay(failures), exc.label, failures=failures) from exc
                case Action.retry_later:
                    failures = row.failures + 1
                    if failures > backoff.MAX_CAP_ATTEMPTS:
                        raise Failed(_tiktok_error(exc)) from exc
                    raise Defer(self._cap_backoff.delay(failures), exc.label, failures=failures) from exc
                case _:
                    raise Failed(_tiktok_error(exc)) from exc

    # ------------------------------------------------------------------------------ validating

    async def _validate_and_init(self, row: PostRow) -> PostRow | None:
        post = row.request
        if row.init_in_doubt and row.publish_id is None:
            return await self._init_in_doubt(row)
        validation.check_captions(post)
        creator: CreatorInfo | None = None
        if post.mode is PostMode.direct:
            creator = await self._call(row, Endpoint.creator_info, self.tiktok.creator_info)
            validation.check_against_creator(post, creator)
        if post.kind is PostKind.photo:
            return await self._init_photo(row, creator)
        assert post.video is not None  # noqa: S101 - the event model guarantees it
        loc = parse_s3_uri(post.video.uri)
        validation.check_bucket(loc.bucket, self.settings.s3_allowed_buckets)
        info = await self._head(loc.bucket, loc.key)
        validation.check_video_size(info.size)
        try:
            video = await probe_video(self.media.reader(loc.bucket, loc.key, info.size), info.size)
        except MediaError as exc:
            raise validation.media_error(exc) from exc
        except S3Unavailable as exc:
            raise Defer(
                backoff.TRANSIENT.delay(row.failures + 1), "storage_unavailable", failures=row.failures + 1
            ) from exc
        validation.check_video(post, video, creator)
        media_fields = {
            "media_size": info.size,
            "content_type": video.container.content_type,
            "duration_s": video.duration_s,
        }
        if post.transfer is Transfer.file_upload:
            try:
                plan = plan_chunks(info.size, self.settings.chunk_size)
            except ChunkPlanError as exc:
                raise Rejected("too_large", str(exc)) from exc
            return await self._file_init(row, plan, creator, media_fields)
        row = await self.repo.save(row, self.owner, self.settings.lease_s, **media_fields)
        url = await self.media.pull_url(loc.bucket, loc.key)
        if post.mode is PostMode.direct:
            post_info = validation.video_post_info(post, creator)

            async def init(token: str) -> Any:
                return await self.tiktok.init_direct_video(token, post_info, validation.pull_source_info(url))
        else:

            async def init(token: str) -> Any:
                return await self.tiktok.init_inbox_video(token, validation.pull_source_info(url))

        return await self._pull_init(row, init)

    async def _head(self, bucket: str, key: str) -> Any:
        try:
            return await self.media.head(bucket, key)
        except S3ObjectMissing as exc:
            raise Rejected("missing_object", f"s3://{bucket}/{key} does not exist") from exc
        except S3Unavailable as exc:
            raise Defer(backoff.TRANSIENT.delay(1), "storage_unavailable") from exc
        except S3Error as exc:
            raise Rejected("media_unreadable", str(exc)) from exc

    async def _init_photo(self, row: PostRow, creator: CreatorInfo | None) -> PostRow | None:
        post = row.request
        urls = []
        for ref in post.photos or []:
            loc = parse_s3_uri(ref.uri)
            validation.check_bucket(loc.bucket, self.settings.s3_allowed_buckets)
            info = await self._head(loc.bucket, loc.key)
            validation.check_photo_size(info.size)
            try:
                image_format(await self.media.reader(loc.bucket, loc.key, info.size)(0, 12))
            except MediaError as exc:
                raise validation.media_error(exc) from exc
            urls.append(await self.media.pull_url(loc.bucket, loc.key))
        post_info = validation.photo_post_info(post, creator)
        source = validation.photo_source_info(urls, post.cover_index or 0)
        mode = validation.photo_post_mode(post)

        async def init(token: str) -> Any:
            return await self.tiktok.init_photo(token, mode, post_info, source)

        return await self._pull_init(row, init)

    async def _pull_init(self, row: PostRow, init: Callable[[str], Awaitable[Any]]) -> PostRow | None:
        """A PULL_FROM_URL init: marked in doubt before it goes, so a lost answer is never repeated."""
        row = await self.repo.save(
            row, self.owner, self.settings.lease_s, init_in_doubt=True, init_sent_at=_now()
        )
        try:
            result = await self._call(row, Endpoint.init, init)
        except TikTokTransportError as exc:
            if exc.maybe_applied:
                log.warning("pull_init_outcome_unknown", error=str(exc))
                raise Defer(5.0, "init_in_doubt") from exc
            raise Defer(
                backoff.TRANSIENT.delay(row.failures + 1),
                "tiktok_unreachable",
                failures=row.failures + 1,
                init_in_doubt=False,
            ) from exc
        except (Defer, Failed) as exc:
            # TikTok answered (or we never called): the init surely did not apply.
            if isinstance(exc, Defer):
                exc.fields["init_in_doubt"] = False
                raise
            await self.repo.save(row, self.owner, self.settings.lease_s, init_in_doubt=False)
            raise
        self.metrics.inits.labels("pull").inc()
        return await self.repo.transition(
            row,
            PostState.processing,
            owner=self.owner,
            publish_id=result.publish_id,
            init_in_doubt=False,
            failures=0,
            polls=0,
        )

    async def _init_in_doubt(self, row: PostRow) -> PostRow | None:
        """An earlier PULL init lost its answer. Never repeat it; a webhook may still name it."""
        sent = row.init_sent_at or row.updated_at
        grace = timedelta(seconds=self.settings.init_doubt_grace_s)
        if _now() - sent < grace:
            raise Defer(10.0, "init_in_doubt")
        raise Failed(
            ErrorInfo(
                code="init_outcome_unknown",
                message="TikTok may have accepted the PULL_FROM_URL init but its answer was lost; "
                "it is not repeated to avoid a double post. Check the creator's profile.",
            )
        )

    # ------------------------------------------------------------------------------ uploading

    async def _file_init(
        self, row: PostRow, plan: ChunkPlan, creator: CreatorInfo | None, media_fields: dict[str, Any]
    ) -> PostRow:
        """FILE_UPLOAD init, then ``uploading`` with publish_id and upload_url saved in the same update,
        before any byte is sent. Repeating it is safe: TikTok cannot complete a post without our bytes."""
        post = row.request
        source = validation.file_source_info(plan.video_size, plan.chunk_size, plan.total_chunks)
        if post.mode is PostMode.direct:
            post_info = validation.video_post_info(post, creator)

            async def init(token: str) -> Any:
                return await self.tiktok.init_direct_video(token, post_info, source)
        else:

            async def init(token: str) -> Any:
                return await self.tiktok.init_inbox_video(token, source)

        try:
            result = await self._call(row, Endpoint.init, init)
        except TikTokTransportError as exc:
            failures = row.failures + 1
            raise Defer(backoff.TRANSIENT.delay(failures), "tiktok_unreachable", failures=failures) from exc
        if not result.upload_url:
            raise Failed(
                ErrorInfo(
                    code="invalid_response",
                    message="init answered without an upload_url",
                    tiktok_log_id=result.log_id,
                )
            )
        self.metrics.inits.labels("file").inc()
        log.info("upload_initialised", publish_id=result.publish_id, chunks=plan.total_chunks)
        return await self.repo.transition(
            row,
            PostState.uploading,
            owner=self.owner,
            publish_id=result.publish_id,
            upload_url=result.upload_url,
            upload_url_issued_at=_now(),
            bytes_acked=0,
            failures=0,
            chunk_size=plan.chunk_size,
            total_chunks=plan.total_chunks,
            progress=Progress(bytes_sent=0, bytes_total=plan.video_size),
            **media_fields,
        )

    async def _upload(self, row: PostRow) -> PostRow | None:
        post = row.request
        assert post.video is not None and row.media_size and row.chunk_size and row.total_chunks  # noqa: S101
        plan = ChunkPlan(row.media_size, row.chunk_size, row.total_chunks)
        loc = parse_s3_uri(post.video.uri)
        if row.publish_id is None or row.upload_url is None:
            return await self.repo.transition(row, PostState.validating, owner=self.owner)
        if row.upload_url_issued_at is not None and _now() - row.upload_url_issued_at > UPLOAD_URL_TTL:
            return await self._upload_url_gone(row, plan, "upload_url_expired")
        offset = row.bytes_acked
        if offset:
            log.info(
                "upload_resumed", publish_id=row.publish_id, bytes_acked=offset, bytes_total=plan.video_size
            )
        retries = 0
        last_event = time.monotonic() - 1.0
        while offset < plan.video_size:
            if self.stopping.is_set():  # shutdown: checkpointed after the chunk in flight
                log.info("upload_checkpointed", bytes_acked=offset)
                await self.repo.release(row, self.owner, 0.0)
                return None
            first, last = plan.bounds(plan.index_at(offset))
            result = await self._put(row, loc.bucket, loc.key, first, last, plan.video_size)
            if result is None:  # 5xx, 429 or a broken connection: the same chunk again
                retries += 1
                if retries > MAX_CHUNK_RETRIES:
                    failures = row.failures + 1
                    raise Defer(
                        backoff.TRANSIENT.delay(failures), "chunk_retries_exhausted", failures=failures
                    )
                await asyncio.sleep(backoff.TRANSIENT.delay(retries) / 4)
                continue
            retries = 0
            if result.status in (201, 206):
                self.metrics.bytes_sent.inc(last - first + 1)
                offset = plan.video_size if result.status == 201 else last + 1
            elif result.status == 416:
                resumed = resync_offset(plan, result.content_range)
                self.metrics.chunk_retries.labels("resync").inc()
                log.info(
                    "upload_resync", sent_at=first, tiktok_at=resumed, content_range=result.content_range
                )
                if resumed is None:
                    return await self._upload_url_gone(row, plan, "unreadable_content_range")
                offset = resumed
            elif result.status in (403, 404):
                return await self._upload_url_gone(row, plan, f"upload_http_{result.status}")
            else:
                raise Failed(
                    ErrorInfo(
                        code="invalid_file_upload",
                        message=f"TikTok refused a chunk with HTTP {result.status}",
                    )
                )
            if offset >= plan.video_size:
                break
            progress_due = time.monotonic() - last_event >= 1.0
            if progress_due:
                last_event = time.monotonic()
                progress = Progress(bytes_sent=offset, bytes_total=plan.video_size)
                row = await self.repo.emit_update(
                    row, owner=self.owner, progress=progress, bytes_acked=offset
                )
            else:
                row = await self.repo.save(row, self.owner, self.settings.lease_s, bytes_acked=offset)
        log.info("upload_complete", publish_id=row.publish_id, bytes=plan.video_size)
        return await self.repo.transition(
            row,
            PostState.processing,
            owner=self.owner,
            bytes_acked=plan.video_size,
            failures=0,
            polls=0,
            progress=Progress(bytes_sent=plan.video_size, bytes_total=plan.video_size),
        )

    async def _put(
        self, row: PostRow, bucket: str, key: str, first: int, last: int, total: int
    ) -> PutResult | None:
        """One chunk PUT; None when it should simply be sent again (5xx, 429, connection broken)."""
        assert row.upload_url is not None  # noqa: S101
        try:
            result = await self.tiktok.put_chunk(
                row.upload_url,
                self._body(row, bucket, key, first, last),
                first=first,
                last=last,
                total=total,
                content_type=row.content_type or Container.mp4.content_type,
            )
        except TikTokTransportError as exc:
            self.metrics.chunk_retries.labels("transport").inc()
            log.warning("chunk_interrupted", first=first, error=str(exc))
            return None
        except S3Unavailable as exc:
            failures = row.failures + 1
            raise Defer(backoff.TRANSIENT.delay(failures), "storage_unavailable", failures=failures) from exc
        if result.status >= 500 or result.status == 429:
            self.metrics.chunk_retries.labels(f"http_{result.status}").inc()
            log.warning("chunk_retry", first=first, http=result.status)
            return None
        return result

    async def _body(self, row: PostRow, bucket: str, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        """One chunk, streamed from a ranged GET; renews the lease while a slow chunk is under way."""
        renewed = time.monotonic()
        async for piece in self.media.stream(bucket, key, first, last, self.settings.stream_piece_bytes):
            yield piece
            if time.monotonic() - renewed > self.settings.lease_s / 3:
                renewed = time.monotonic()
                await self.repo.save(row, self.owner, self.settings.lease_s)

    async def _upload_url_gone(self, row: PostRow, plan: ChunkPlan, why: str) -> PostRow | None:
        """The upload URL no longer works. Status fetch decides whether the old publish can still
        complete (then we wait for it) or not (then, and only then, a new init)."""
        assert row.publish_id is not None  # noqa: S101
        publish_id = row.publish_id
        status = await self._call(
            row, Endpoint.status, lambda token: self.tiktok.fetch_status(token, publish_id)
        )
        log.info("upload_url_gone", why=why, tiktok_status=status.status, uploaded=status.uploaded_bytes)
        complete = status.status in ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX") or (
            status.status == "PROCESSING_UPLOAD" and (status.uploaded_bytes or 0) >= plan.video_size
        )
        if complete:
            return await self.repo.transition(
                row,
                PostState.processing,
                owner=self.owner,
                bytes_acked=plan.video_size,
                polls=0,
                progress=Progress(bytes_sent=plan.video_size, bytes_total=plan.video_size),
            )
        if status.status == "PROCESSING_UPLOAD" and why == "upload_http_404":
            # TikTok still waits for bytes but does not know this URL: odd; retry later, no new init.
            raise Defer(backoff.TRANSIENT.delay(row.failures + 1), why, failures=row.failures + 1)
        log.info("upload_reinit", old_publish_id=publish_id, why=why)
        self.metrics.reinits.inc()
        # The old task cannot complete (failed, or short of its bytes with a dead URL): a new init.
        return await self.repo.transition(
            row,
            PostState.validating,
            owner=self.owner,
            publish_id=None,
            upload_url=None,
            upload_url_issued_at=None,
            bytes_acked=0,
            tiktok_status=status.status,
        )

    # ------------------------------------------------------------------------------ processing

    async def _fetch(self, row: PostRow) -> PublishStatus:
        assert row.publish_id is not None  # noqa: S101
        publish_id = row.publish_id
        return await self._call(
            row, Endpoint.status, lambda token: self.tiktok.fetch_status(token, publish_id)
        )

    async def _poll(self, row: PostRow) -> PostRow | None:
        status = await self._fetch(row)
        return await self.apply_status(row, status, owner=self.owner)

    async def apply_status(self, row: PostRow, status: PublishStatus, *, owner: str | None) -> PostRow | None:
        """Act on TikTok's status of the post's publish_id (from a poll, or a webhook's hint)."""
        post = row.request
        match status.status:
            case "PUBLISH_COMPLETE":
                ids = tuple(status.post_ids)
                waiting = not ids and validation.expects_public_id(post)
                self.metrics.finished.labels("published").inc()
                log.info("post_published", publish_id=row.publish_id, tiktok_post_ids=list(ids))
                new = await self.repo.transition(
                    row,
                    PostState.published,
                    owner=owner,
                    tiktok_status=status.status,
                    tiktok_post_ids=ids,
                    awaiting_post_id=waiting,
                    polls=0,
                    failures=0,
                    watch_until=_now() + timedelta(seconds=self.settings.post_id_watch_s)
                    if waiting
                    else None,
                )
                if owner is not None:
                    delay = backoff.post_id_poll_delay(0)
                    await self.repo.release(new, owner, delay)
                return None
            case "SEND_TO_USER_INBOX":
                self.metrics.finished.labels("inbox_delivered").inc()
                new = await self.repo.transition(
                    row, PostState.inbox_delivered, owner=owner, tiktok_status=status.status
                )
                if owner is not None:
                    await self.repo.release(new, owner, 0.0)
                return None
            case "FAILED":
                reason = status.fail_reason or "unknown"
                if reason in RETRYABLE_FAIL_REASONS and row.attempt < MAX_PUBLISH_ATTEMPTS:
                    log.info("publish_retry_after_failure", fail_reason=reason, attempt=row.attempt)
                    return await self.repo.transition(
                        row,
                        PostState.validating,
                        owner=owner,
                        attempt=row.attempt + 1,
                        publish_id=None,
                        upload_url=None,
                        upload_url_issued_at=None,
                        bytes_acked=0,
                        tiktok_status=status.status,
                        init_in_doubt=False,
                        polls=0,
                    )
                raise Failed(
                    ErrorInfo(
                        code=reason,
                        message=f"TikTok failed the post: {reason}",
                        retryable=reason in RETRYABLE_FAIL_REASONS,
                        tiktok_log_id=status.log_id,
                    )
                )
            case _:
                if owner is None:
                    return None
                delay = backoff.status_poll_delay(row.polls)
                await self.repo.release(
                    row, owner, delay, polls=row.polls + 1, tiktok_status=status.status, failures=0
                )
                return None

    async def _watch_post_id(self, row: PostRow) -> PostRow | None:
        if row.watch_until is not None and _now() > row.watch_until:
            await self.repo.release(row, self.owner, 0.0, awaiting_post_id=False)
            return None
        status = await self._fetch(row)
        if status.post_ids:
            log.info("post_public_id", tiktok_post_ids=list(status.post_ids))
            new = await self.repo.emit_update(
                row, owner=self.owner, tiktok_post_ids=tuple(status.post_ids), awaiting_post_id=False
            )
            await self.repo.release(new, self.owner, 0.0)
            return None
        await self.repo.release(
            row, self.owner, backoff.post_id_poll_delay(row.polls + 1), polls=row.polls + 1
        )
        return None
