"""The insights loops: plan the metrics schedule of published posts, fetch due metrics in batches
per account, and fetch account stats on connect and once per interval (docs/insights.md).

Every replica runs them; the repository's leases make each scheduled fetch happen once, and the
shared rate log keeps the per-token limit across replicas. What each answer means is decided in
:mod:`publish_service.domain.insights`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from common.cipher import DecryptionFailed, TokenCipher, transport_purpose
from common.events import AccountStatsData, InsightsUnavailable, PostMetricsData
from common.kafka import TOPIC_ACCOUNT_STATS, TOPIC_POST_METRICS
from common.tasks import BackgroundLoops, sleep_or_stop
from common.tiktok import display
from common.tiktok.client import TikTokClient
from common.tiktok.errors import Action, TikTokError, TikTokTransportError
from publish_service.adapters.insights import DueAccount, DueSlot, InsightsRepository, SlotResult
from publish_service.domain import insights as decide
from publish_service.domain.rate_window import Endpoint
from publish_service.handlers.ports import InsightsStore, PostStore
from publish_service.settings import Settings

log = structlog.get_logger(__name__)

SHORT_WAIT_S = 3.0
TOKEN_RETRY_S = 60.0


class InsightsMetrics:
    """Latest counts per account (not per post: the label set stays small), and fetch outcomes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.views = Gauge(
            "tiktok_account_views", "Sum of the latest view counts of the account's posts", ["account_id"],
            registry=registry,
        )  # fmt: skip
        self.likes = Gauge(
            "tiktok_account_likes", "Sum of the latest like counts of the account's posts", ["account_id"],
            registry=registry,
        )  # fmt: skip
        self.fetches = Counter(
            "tiktok_insights_fetches", "Insights slots finished, by outcome", ["kind", "outcome"],
            registry=registry,
        )  # fmt: skip


@dataclass
class Insights:
    store: InsightsStore
    posts: PostStore  # the account mirror, refresh requests and the shared rate log
    tiktok: TikTokClient
    cipher: TokenCipher
    settings: Settings
    stopping: asyncio.Event
    metrics: InsightsMetrics

    @property
    def owner(self) -> str:
        return self.settings.instance_id

    @property
    def lease_s(self) -> float:
        return max(self.settings.lease_s, self.settings.tiktok_timeout_s * 2)

    # ------------------------------------------------------------------ loops

    async def run_planner(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            while await self.store.plan(self.settings.insights_schedule_s) > 0:
                pass
            await self.store.plan_accounts()
            for account_id, (views, likes) in (await self.store.latest_by_account()).items():
                self.metrics.views.labels(account_id).set(views)
                self.metrics.likes.labels(account_id).set(likes)
            if await sleep_or_stop(stopping, self.settings.insights_poll_s):
                return

    async def run_metrics(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            slots = await self.store.claim_slots(self.owner, self.lease_s, decide.MAX_BATCH)
            if slots:
                await self.fetch_metrics(slots)
            elif await sleep_or_stop(stopping, self.settings.insights_poll_s):
                return

    async def run_stats(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            account = await self.store.claim_account(self.owner, self.lease_s)
            if account is not None:
                await self.fetch_stats(account)
            elif await sleep_or_stop(stopping, self.settings.insights_poll_s):
                return

    # ------------------------------------------------------------------ shared steps

    async def _token(self, account_id: str) -> tuple[str, int] | None:
        account = await self.posts.account_token(account_id)
        if (
            account is None
            or account.ciphertext is None
            or account.status in ("disconnected", "reauth_required")
        ):
            return None
        if account.expires_at is not None and account.expires_at <= datetime.now(UTC):
            await self.posts.request_refresh(account_id, account.token_version, "access_token_expired")
            return None
        try:
            token = self.cipher.decrypt(
                account.ciphertext, account_id=account_id, purpose=transport_purpose(account.token_version)
            )
        except DecryptionFailed as exc:
            log.warning("insights_token_undecryptable", account_id=account_id, error=str(exc))
            return None
        return token, account.token_version

    async def _rate_slot(self, account_id: str, endpoint: Endpoint) -> float:
        """0 once a slot of the shared window is ours; else how long to give the work back for."""
        while True:
            wait = await self.posts.acquire_slot(account_id, endpoint)
            if wait <= 0:
                return 0.0
            if wait > SHORT_WAIT_S or await sleep_or_stop(self.stopping, wait):
                return wait

    # ------------------------------------------------------------------ post metrics

    async def fetch_metrics(self, slots: list[DueSlot]) -> None:
        account_id = slots[0].account_id
        attempts = max(s.attempts for s in slots) + 1
        token = await self._token(account_id)
        if token is None:
            await self.store.release_slots(slots, self.owner, TOKEN_RETRY_S, failed=False)
            return
        wait = await self._rate_slot(account_id, Endpoint.video_query)
        if wait > 0:
            await self.store.release_slots(slots, self.owner, wait, failed=False)
            return
        ids = [s.video_id for s in slots]
        fetched_at = datetime.now(UTC)
        try:
            answer = await display.query_videos(self.tiktok, token[0], decide.batches(ids)[0])
        except TikTokError as exc:
            log.info("insights_query_refused", account_id=account_id, code=exc.tiktok_code, log_id=exc.log_id)
            if exc.action is Action.refresh:
                await self.posts.request_refresh(account_id, token[1], exc.tiktok_code)
            results = [
                (
                    s,
                    decide.after_error(
                        exc.tiktok_code, exc.status, scope_reported=s.scope_reported, attempts=attempts
                    ),
                )
                for s in slots
            ]
            if any(o.verdict in (decide.Verdict.retry, decide.Verdict.refresh) for _, o in results):
                await self.store.release_slots(slots, self.owner, decide.retry_delay(attempts), failed=True)
                return
            await self._finish([self._result(s, o, fetched_at, None, exc.log_id) for s, o in results])
            return
        except TikTokTransportError as exc:
            log.info("insights_query_unanswered", account_id=account_id, error=str(exc))
            await self.store.release_slots(slots, self.owner, decide.retry_delay(attempts), failed=True)
            return
        await self._finish(
            [
                self._result(
                    s, decide.after_answer(s.video_id in answer.videos), fetched_at,
                    answer.videos.get(s.video_id), answer.log_id,
                )
                for s in slots
            ]
        )  # fmt: skip

    def _result(
        self,
        slot: DueSlot,
        outcome: decide.SlotOutcome,
        fetched_at: datetime,
        counts: display.VideoCounts | None,
        log_id: str | None,
    ) -> SlotResult:
        if outcome.verdict is decide.Verdict.drop:
            return SlotResult(slot, None, "ended", end_post=outcome.later_slots_done)
        data = PostMetricsData(
            post_id=slot.post_id,
            account_id=slot.account_id,
            tiktok_post_id=slot.video_id,
            slot=slot.slot,
            slot_after_s=slot.after_s,
            fetched_at=fetched_at,
            view_count=counts.view_count if counts else None,
            like_count=counts.like_count if counts else None,
            comment_count=counts.comment_count if counts else None,
            share_count=counts.share_count if counts else None,
            insights_unavailable=outcome.reason,
            tiktok_log_id=log_id or None,
        )
        return SlotResult(
            slot,
            data,
            outcome.reason.value if outcome.reason else "counts",
            end_post=outcome.later_slots_done,
        )

    async def _finish(self, results: list[SlotResult]) -> None:
        metadata = await self.store.metadata([r.slot.post_id for r in results])
        results = [
            SlotResult(
                r.slot,
                r.data.model_copy(update={"metadata": metadata.get(r.slot.post_id)}),
                r.outcome,
                r.end_post,
            )
            if r.data is not None
            else r
            for r in results
        ]
        await self.store.finish_slots(results, self.owner)
        for r in results:
            self.metrics.fetches.labels("post", r.outcome).inc()

    # ------------------------------------------------------------------ account stats

    async def fetch_stats(self, account: DueAccount) -> None:
        interval = self.settings.insights_stats_interval_s
        fetched_at = datetime.now(UTC)
        if decide.scopes_missing(account.scopes, display.SCOPE_USER_STATS):
            await self._stats_scope_missing(account, fetched_at, None)
            return
        token = await self._token(account.account_id)
        if token is None:
            await self.store.release_account(account.account_id, self.owner, TOKEN_RETRY_S, failed=False)
            return
        wait = await self._rate_slot(account.account_id, Endpoint.user_info)
        if wait > 0:
            await self.store.release_account(account.account_id, self.owner, wait, failed=False)
            return
        try:
            stats = await display.account_stats(self.tiktok, token[0])
        except TikTokError as exc:
            outcome = decide.after_error(
                exc.tiktok_code,
                exc.status,
                scope_reported=account.scope_reported,
                attempts=account.attempts + 1,
            )
            if outcome.verdict is decide.Verdict.drop or outcome.reason is InsightsUnavailable.scope_missing:
                await self._stats_scope_missing(account, fetched_at, exc.log_id)
                return
            if outcome.verdict is decide.Verdict.unavailable:  # refused again and again: until next time
                log.warning("insights_stats_refused", account_id=account.account_id, code=exc.tiktok_code)
                await self.store.finish_account(account.account_id, self.owner, None, interval)
                return
            if exc.action is Action.refresh:
                await self.posts.request_refresh(account.account_id, token[1], exc.tiktok_code)
            delay = decide.retry_delay(account.attempts + 1)
            await self.store.release_account(account.account_id, self.owner, delay, failed=True)
            return
        except TikTokTransportError:
            delay = decide.retry_delay(account.attempts + 1)
            await self.store.release_account(account.account_id, self.owner, delay, failed=True)
            return
        data = AccountStatsData(
            account_id=account.account_id,
            fetched_at=fetched_at,
            follower_count=stats.follower_count,
            following_count=stats.following_count,
            likes_count=stats.likes_count,
            video_count=stats.video_count,
            tiktok_log_id=stats.log_id or None,
        )
        await self.store.finish_account(account.account_id, self.owner, data, interval)
        self.metrics.fetches.labels("account", "counts").inc()

    async def _stats_scope_missing(
        self, account: DueAccount, fetched_at: datetime, log_id: str | None
    ) -> None:
        """Said once per account (until its scopes change), then checked again each interval quietly."""
        data = None
        if not account.scope_reported:
            data = AccountStatsData(
                account_id=account.account_id,
                fetched_at=fetched_at,
                insights_unavailable=InsightsUnavailable.scope_missing,
                tiktok_log_id=log_id,
            )
        await self.store.finish_account(
            account.account_id, self.owner, data, self.settings.insights_stats_interval_s
        )
        self.metrics.fetches.labels("account", "scope_missing").inc()


def add_insights_loops(
    loops: BackgroundLoops,
    pool: Any,
    posts: PostStore,
    tiktok: TikTokClient,
    settings: Settings,
    registry: CollectorRegistry,
) -> Insights:
    """The three loops on ``loops`` (app.py's one line of wiring)."""
    insights = Insights(
        store=InsightsRepository(
            pool,
            settings.schema,
            metrics_topic=settings.topic(TOPIC_POST_METRICS),
            stats_topic=settings.topic(TOPIC_ACCOUNT_STATS),
        ),
        posts=posts,
        tiktok=tiktok,
        cipher=TokenCipher(settings.transport_keys),
        settings=settings,
        stopping=loops.stopping,
        metrics=InsightsMetrics(registry),
    )
    loops.add("insights_planner", insights.run_planner, restart_delay=5.0)
    loops.add("insights_metrics", insights.run_metrics, restart_delay=5.0)
    loops.add("insights_stats", insights.run_stats, restart_delay=5.0)
    return insights
