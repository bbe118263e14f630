"""TikTok webhooks (spec §8): checked, de-duplicated, and used to finish posts sooner.

A webhook is a hint, not the truth: status fetch stays the one source of a post's state. A complete,
failed or inbox event makes the post due now, so a worker fetches its status at once instead of at the
next poll; a ``publicly_available`` event carries the public post id, which is emitted as an update.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import structlog

from common.errors import InvalidInput, TransientError
from common.events import BadEvent, PostState, parse_json
from common.tiktok.webhooks import (
    NO_LONGER_PUBLICLY_AVAILABLE,
    PUBLICLY_AVAILABLE,
    canonical_event,
    content_post_id,
)
from publish_service.domain.post import LeaseLost, PostPatch, PostRow
from publish_service.handlers.ports import WebhookStore
from publish_service.metrics import Metrics

log = structlog.get_logger(__name__)

AUTHORIZATION_REMOVED_EVENT = "authorization.removed"

POST_EVENTS = frozenset(
    {
        "post.publish.complete",
        "post.publish.failed",
        "post.publish.inbox_delivered",
        PUBLICLY_AVAILABLE,
        NO_LONGER_PUBLICLY_AVAILABLE,  # both read with either spelling of "publicly" (canonical_event)
    }
)


@dataclass(frozen=True)
class Webhook:
    event: str
    user_openid: str
    create_time: int
    content: dict[str, Any]

    @property
    def dedupe_key(self) -> str:
        parts = [
            self.event,
            self.user_openid,
            str(self.content.get("publish_id", "")),
            str(self.content.get("post_id", "")),
            str(self.create_time),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _loads(text: bytes | str) -> Any:
    """Untrusted JSON: too deep or holding a NUL (Postgres refuses those) is a 400 with its own code."""
    try:
        return parse_json(text)
    except BadEvent as exc:
        if exc.code == "not_json":
            raise InvalidInput("the webhook body is not JSON") from exc
        raise


def parse_webhook(body: bytes) -> Webhook:
    raw = _loads(body)
    content = raw.get("content") if isinstance(raw, dict) else None
    parsed = _loads(content) if isinstance(content, str) else content
    if not isinstance(raw, dict) or not isinstance(parsed, dict):
        raise InvalidInput("the webhook has no content object")
    create_time = raw.get("create_time") or 0
    if (
        isinstance(create_time, bool)
        or not isinstance(create_time, int | float)
        or not math.isfinite(create_time)
    ):
        raise InvalidInput(f"create_time must be a number of seconds, not {str(create_time)[:40]!r}")
    return Webhook(
        event=canonical_event(str(raw.get("event", ""))),
        user_openid=str(raw.get("user_openid", "")),
        create_time=int(create_time),
        content=parsed,
    )


class WebhookHandler:
    def __init__(self, repo: WebhookStore, metrics: Metrics) -> None:
        self.repo = repo
        self.metrics = metrics

    async def handle(self, hook: Webhook) -> str:
        """Act on one verified delivery; the outcome names what happened (for metrics and tests)."""
        if hook.event == AUTHORIZATION_REMOVED_EVENT:
            return await self._authorization_removed(hook)
        if hook.event not in POST_EVENTS:
            return self._count("ignored")
        if not await self.repo.first_delivery(hook.dedupe_key):
            return self._count("duplicate")
        publish_id = str(hook.content.get("publish_id", ""))
        post = await self.repo.by_publish_id(publish_id) if publish_id else None
        if post is None and publish_id:
            post = await self._adopt(hook, publish_id)
        if post is None:
            log.info("webhook_unknown_publish_id", webhook_event=hook.event, publish_id=publish_id)
            return self._count("unknown_post")
        with structlog.contextvars.bound_contextvars(post_id=post.post_id, account_id=post.account_id):
            log.info("webhook_received", webhook_event=hook.event, publish_id=publish_id)
            post_id = content_post_id(hook.content)
            if hook.event == PUBLICLY_AVAILABLE and post_id is not None:
                ids = (str(post_id),)
                if post.state is PostState.published and str(post_id) not in post.tiktok_post_ids:
                    try:
                        await self.repo.emit_update(
                            post,
                            owner=None,
                            patch=PostPatch(
                                tiktok_post_ids=post.tiktok_post_ids + ids, awaiting_post_id=False
                            ),
                        )
                    except LeaseLost:
                        await self.repo.wake(post.post_id)  # a worker holds it; it will fetch the id itself
                    return self._count("post_id")
            if hook.event == "post.publish.complete" and post.state is PostState.inbox_delivered:
                # The creator posted the draft from the TikTok app (spec §4.8): the draft is published.
                # Following ends (watch_until cleared); the public id, if TikTok names it, is recorded.
                patch = PostPatch(tiktok_status="PUBLISH_COMPLETE", watch_until=None, polls=0)
                if post_id is not None:
                    patch["tiktok_post_ids"] = (str(post_id),)
                try:
                    await self.repo.transition(post, PostState.published, owner=None, patch=patch)
                except LeaseLost:
                    # A worker holds the draft (its slow poll): wake it, its fetch sees the posting.
                    await self.repo.wake(post.post_id)
                    return self._count("stale")
                return self._count("draft_posted")
            if hook.event == "post.publish.complete" and post.state is PostState.published:
                return self._count("repeat")  # TikTok may send it several times for one draft (§8)
            await self.repo.wake(post.post_id)
            return self._count("woken")

    async def _authorization_removed(self, hook: Webhook) -> str:
        """The creator removed the app's access in TikTok: auth_service owns accounts, so it is told
        (a refresh request with reason ``authorization_removed``), forgets the account and announces it
        ``revoked`` with a token tombstone; posts for it then fail with ``account_revoked``."""
        if not hook.user_openid:
            raise InvalidInput("authorization.removed without a user_openid")
        accounts = await self.repo.relay_authorization_removed(hook.user_openid, hook.dedupe_key)
        if accounts is None:
            return self._count("duplicate")
        if not accounts:
            # Not heard of yet: the removal may have overtaken the account's connect event. Answering
            # non-200 makes TikTok deliver it again (spec §8, for up to 72 h) instead of it being lost.
            self._count("unknown_account")
            log.warning("webhook_authorization_removed_unknown_account", reason=hook.content.get("reason"))
            raise TransientError(
                "authorization.removed for a TikTok user no account is known for yet; deliver it again",
                code="account_not_known_yet",
            )
        log.info("webhook_authorization_removed", accounts=accounts, reason=hook.content.get("reason"))
        return self._count("authorization_removed")

    async def _adopt(self, hook: Webhook, publish_id: str) -> PostRow | None:
        """A PULL_FROM_URL init whose answer was lost did apply: TikTok now names its publish_id.

        Adopted only when exactly one post of that creator is in doubt; with several, which one it
        is cannot be told, and they end as ``init_outcome_unknown`` for a person to check.
        """
        candidates = await self.repo.in_doubt_for(hook.user_openid)
        if len(candidates) != 1:
            if candidates:
                log.warning("webhook_in_doubt_ambiguous", publish_id=publish_id, candidates=len(candidates))
            return None
        post = candidates[0]
        log.info("pull_init_adopted", post_id=post.post_id, publish_id=publish_id)
        try:
            return await self.repo.transition(
                post,
                PostState.processing,
                owner=None,
                patch=PostPatch(publish_id=publish_id, init_in_doubt=False, polls=0),
            )
        except LeaseLost:
            return None

    def _count(self, outcome: str) -> str:
        self.metrics.webhooks.labels(outcome).inc()
        return outcome
