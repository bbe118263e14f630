"""Following a post after the transfer: status fetches until TikTok ends it, then the public post id.

What each answer means is :func:`decisions.on_status`; this module only carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog

from common.events import PostState
from publish_service.domain import backoff, decisions, validation
from publish_service.domain.post import PostPatch, PostRow
from publish_service.handlers.calls import Failed, Steps, now

log = structlog.get_logger(__name__)


@dataclass
class StatusFollower:
    steps: Steps

    async def poll(self, row: PostRow) -> PostRow | None:
        """Fetch the status of a processing post and act on it; None once the lease is given back."""
        s = self.steps
        status = await s.fetch_status(row)
        decision = decisions.on_status(
            status,
            attempt=row.attempt,
            polls=row.polls,
            expects_public_id=validation.expects_public_id(row.request),
        )
        match decision:
            case decisions.Published(post_ids=ids, awaiting_post_id=waiting):
                s.metrics.finished.labels("published").inc()
                log.info("post_published", publish_id=row.publish_id, tiktok_post_ids=list(ids))
                new = await s.repo.transition(
                    row,
                    PostState.published,
                    owner=s.owner,
                    patch=PostPatch(
                        tiktok_status=status.status,
                        tiktok_post_ids=ids,
                        awaiting_post_id=waiting,
                        polls=0,
                        failures=0,
                        watch_until=now() + timedelta(seconds=s.settings.post_id_watch_s)
                        if waiting
                        else None,
                    ),
                )
                await s.repo.release(new, s.owner, backoff.post_id_poll_delay(0))
                return None
            case decisions.Delivered():
                s.metrics.finished.labels("inbox_delivered").inc()
                new = await s.repo.transition(
                    row,
                    PostState.inbox_delivered,
                    owner=s.owner,
                    patch=PostPatch(tiktok_status=status.status),
                )
                await s.repo.release(new, s.owner, 0.0)
                return None
            case decisions.StartOver(attempt=attempt, fail_reason=reason):
                log.info("publish_retry_after_failure", fail_reason=reason, attempt=row.attempt)
                return await s.repo.transition(
                    row,
                    PostState.validating,
                    owner=s.owner,
                    patch=PostPatch(
                        attempt=attempt,
                        publish_id=None,
                        upload_url=None,
                        upload_url_issued_at=None,
                        bytes_acked=0,
                        tiktok_status=status.status,
                        init_in_doubt=False,
                        polls=0,
                    ),
                )
            case decisions.Fail(error=error):
                raise Failed(error)
            case decisions.PollAgain(delay_s=delay):
                await s.repo.release(
                    row,
                    s.owner,
                    delay,
                    PostPatch(polls=row.polls + 1, tiktok_status=status.status, failures=0),
                )
                return None
        raise AssertionError("unreachable")

    async def watch_post_id(self, row: PostRow) -> PostRow | None:
        """A published public post: fetch until TikTok names its public id, or the watch ends."""
        s = self.steps
        if row.watch_until is not None and now() > row.watch_until:
            await s.repo.release(row, s.owner, 0.0, PostPatch(awaiting_post_id=False))
            return None
        status = await s.fetch_status(row)
        if status.post_ids:
            log.info("post_public_id", tiktok_post_ids=list(status.post_ids))
            new = await s.repo.emit_update(
                row,
                owner=s.owner,
                patch=PostPatch(tiktok_post_ids=tuple(status.post_ids), awaiting_post_id=False),
            )
            await s.repo.release(new, s.owner, 0.0)
            return None
        await s.repo.release(
            row, s.owner, backoff.post_id_poll_delay(row.polls + 1), PostPatch(polls=row.polls + 1)
        )
        return None
