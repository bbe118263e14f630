"""The worker: claims due posts and drives each through its state machine, one step per state.

A step either moves the post on (and the loop continues with the new row) or gives the lease back with
a delay (waiting for TikTok, a rate-limit slot, a new token, a schedule). The steps live by concern:
``init.py`` (validation and the init call), ``upload.py`` (chunks), ``status.py`` (status following);
their decisions are pure functions in ``domain/decisions.py``. This module claims, dispatches, and
carries out how a step ended: deferred, rejected, failed, or crashed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from common.cipher import TokenCipher
from common.events import ErrorInfo, PostState
from common.tracing import continuing, tracer
from publish_service.domain import backoff
from publish_service.domain.post import LeaseLost, PostPatch, PostRow
from publish_service.domain.states import is_legal
from publish_service.domain.validation import Rejected
from publish_service.handlers.calls import Deferred, Failed, Steps
from publish_service.handlers.idle import IdleWorkers
from publish_service.handlers.init import Initialiser
from publish_service.handlers.ports import MediaStore, PostStore, TikTokApi
from publish_service.handlers.status import StatusFollower
from publish_service.handlers.upload import Uploader
from publish_service.metrics import Metrics
from publish_service.settings import Settings

log = structlog.get_logger(__name__)


def worker_owner(instance_id: str, number: int) -> str:
    """The lease owner of one worker task: unique per task, not per process, so a worker whose lease
    ran out while it waited can never pass another worker's lease checks (both would upload)."""
    return f"{instance_id}/w{number}"


@dataclass
class Worker:
    """One worker task: ``run(stopping)`` claims posts leased to ``owner`` (see :func:`worker_owner`)."""

    repo: PostStore
    tiktok: TikTokApi
    media: MediaStore
    cipher: TokenCipher
    settings: Settings
    metrics: Metrics
    owner: str
    idle: IdleWorkers
    """Where this worker waits with nothing to do, until the process's watcher (or a worker that found
    a post) wakes it: see ``handlers/idle.py``."""
    stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    steps: Steps = field(init=False)

    async def run(self, stopping: asyncio.Event) -> None:
        self.stopping = stopping
        self.steps = Steps(
            self.repo, self.tiktok, self.media, self.cipher, self.settings, stopping, self.metrics, self.owner
        )
        self._init = Initialiser(self.steps)
        self._upload = Uploader(self.steps)
        self._status = StatusFollower(self.steps)
        log.info("worker_started", worker=self.owner)
        while not self.stopping.is_set():
            row = await self.repo.claim(self.owner, self.settings.lease_s)
            if row is None:
                if await self.idle.wait(self.stopping):
                    return
                continue
            self.idle.wake_one()  # more may be due: the next idle worker looks too
            with structlog.contextvars.bound_contextvars(
                post_id=row.post_id, account_id=row.account_id, correlation_id=row.correlation_id
            ):
                self.metrics.busy_workers.inc()
                try:
                    with continuing(row.trace_context, "publish post", {"post.id": row.post_id}):
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
        except Deferred as d:
            self.metrics.deferred.labels(d.reason).inc()
            log.info("post_deferred", reason=d.reason, delay_s=round(d.delay_s, 1))
            await self.repo.release(row, self.owner, d.delay_s, d.patch)
        except Exception as exc:
            failures = row.failures + 1
            delay = backoff.TRANSIENT.delay(failures)
            log.exception(
                "post_step_crashed", error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 1)
            )
            try:
                await self.repo.release(row, self.owner, delay, PostPatch(failures=failures))
            except Exception:
                log.exception("post_release_failed")

    async def _step(self, row: PostRow) -> PostRow | None:
        """Run the step for the row's state; the next row to work on, or None when released."""
        with tracer(__name__).start_as_current_span(f"post {row.state.value}"):
            return await self._step_in_span(row)

    async def _step_in_span(self, row: PostRow) -> PostRow | None:
        try:
            match row.state:
                case PostState.received | PostState.scheduled:
                    return await self.repo.transition(row, PostState.validating, owner=self.owner)
                case PostState.validating:
                    return await self._init.validate_and_init(row)
                case PostState.uploading:
                    return await self._upload.upload(row)
                case PostState.processing:
                    return await self._status.poll(row)
                case PostState.published if row.awaiting_post_id:
                    return await self._status.watch_post_id(row)
                case PostState.inbox_delivered if row.watch_until is not None:
                    return await self._status.follow_draft(row)
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
                await self.repo.release(row, self.owner, 0.0, PostPatch(awaiting_post_id=False))
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
