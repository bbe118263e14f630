"""Following a post after the transfer: status fetches until TikTok ends it, then the public post id.

What each answer means is :func:`decisions.on_status`; this module only carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog

from common.events import ErrorInfo, PostState
from publish_service.domain import backoff, decisions, drafts, validation
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
                # Followed until posted, failed or expired: the webhook first, this slow poll as fallback.
                new = await s.repo.transition(
                    row,
                    PostState.inbox_delivered,
                    owner=s.owner,
                    patch=PostPatch(
                        tiktok_status=status.status,
                        polls=0,
                        failures=0,
                        watch_until=now() + timedelta(seconds=s.settings.draft_lifetime_s),
                    ),
                )
                first = drafts.draft_poll_delay(
                    0, base_s=s.settings.draft_poll_s, max_s=s.settings.draft_poll_max_s
                )
                await s.repo.release(new, s.owner, min(first, s.settings.draft_lifetime_s))
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

    async def follow_draft(self, row: PostRow) -> PostRow | None:
        """A delivered draft: one status fetch, then published, failed, expired or the next slow poll.

        ``watch_until`` holds the end of the draft's lifetime; it is cleared when following ends.
        """
        s = self.steps
        assert row.watch_until is not None  # noqa: S101 (the worker dispatches only followed drafts)
        lifetime = s.settings.draft_lifetime_s
        delivered_at = row.watch_until - timedelta(seconds=lifetime)
        status = None
        if now() < row.watch_until:
            try:
                status = await s.fetch_status(row)
            except Failed as f:
                # TikTok refuses to answer for good (e.g. the token was revoked): the draft may still be
                # posted, but we cannot see it. It stays inbox_delivered; following ends.
                log.info("draft_follow_ended", error_code=f.error.code)
                await s.repo.release(row, s.owner, 0.0, PostPatch(watch_until=None))
                return None
        decision = drafts.on_draft_status(
            status,
            delivered_at=delivered_at,
            now=now(),
            lifetime_s=lifetime,
            polls=row.polls + 1,
            base_s=s.settings.draft_poll_s,
            max_s=s.settings.draft_poll_max_s,
        )
        done = PostPatch(watch_until=None, polls=0, failures=0)
        match decision:
            case drafts.DraftPublished(post_ids=ids):
                s.metrics.finished.labels("published").inc()
                log.info("draft_posted", publish_id=row.publish_id, tiktok_post_ids=list(ids), via="poll")
                # The creator chose the privacy in the app: a public id may follow moderation, watch for it.
                watch = now() + timedelta(seconds=s.settings.post_id_watch_s)
                patch = PostPatch(
                    tiktok_status="PUBLISH_COMPLETE",
                    tiktok_post_ids=ids,
                    awaiting_post_id=not ids,
                    watch_until=None if ids else watch,
                    polls=0,
                    failures=0,
                )
                new = await s.repo.transition(row, PostState.published, owner=s.owner, patch=patch)
                await s.repo.release(new, s.owner, 0.0 if ids else backoff.post_id_poll_delay(0))
                return None
            case drafts.DraftFailed(fail_reason=reason):
                s.metrics.finished.labels("failed").inc()
                error = ErrorInfo(
                    code=reason, message=f"TikTok failed the draft in the creator's inbox: {reason}"
                )
                new = await s.repo.transition(
                    row,
                    PostState.failed,
                    owner=s.owner,
                    error=error,
                    patch=PostPatch(**done, tiktok_status="FAILED"),
                )
            case drafts.DraftExpired():
                s.metrics.finished.labels("failed").inc()
                log.info("draft_expired", publish_id=row.publish_id)
                error = ErrorInfo(
                    code=drafts.DRAFT_EXPIRED,
                    message=f"the creator did not post the draft within {lifetime:.0f} s of its delivery",
                )
                new = await s.repo.transition(row, PostState.failed, owner=s.owner, error=error, patch=done)
            case drafts.DraftPollAgain(delay_s=delay):
                tiktok_status = status.status if status is not None else row.tiktok_status
                patch = PostPatch(polls=row.polls + 1, failures=0, tiktok_status=tiktok_status)
                await s.repo.release(row, s.owner, delay, patch)
                return None
        await s.repo.release(new, s.owner, 0.0)
        return None
