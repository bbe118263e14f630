"""Payloads of ``tiktok.post.metrics`` and ``tiktok.account.stats`` (docs/insights.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from common.event_fields import JsonInt, NonNegativeInt, Timestamp
from common.event_posts import Frozen


class InsightsUnavailable(StrEnum):
    """Why an insights event carries no counts."""

    scope_missing = "scope_missing"  # the creator did not grant video.list / user.info.stats
    video_unavailable = "video_unavailable"  # TikTok no longer returns the video: deleted or not public
    query_failed = "query_failed"  # TikTok refused the query again and again (not busy, not a scope)


_METRICS_EXAMPLE: JsonDict = {
    "post_id": "p-1",
    "account_id": "acc-1",
    "tiktok_post_id": "7300000000000000001",
    "slot": 0,
    "slot_after_s": 3600,
    "fetched_at": "2026-11-23T11:00:03Z",
    "view_count": 1200,
    "like_count": 96,
    "comment_count": 6,
    "share_count": 3,
    "insights_unavailable": None,
    "tiktok_log_id": "20261123110003A1B2C3D4E5F60718293A",
    "metadata": {"campaign": "spring"},
}


class PostMetricsData(Frozen):
    """One scheduled fetch of a published post's counts (the Kafka key is ``post_id``).

    The counts are absent when ``insights_unavailable`` says why; ``scope_missing`` is sent once per
    post, ``video_unavailable`` once (the post's later slots end with it)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_METRICS_EXAMPLE]})

    post_id: str = Field(description="The post's id (the Kafka key).")
    account_id: str = Field(description="The account the post was published on.")
    tiktok_post_id: str = Field(description="TikTok's public id of the video that was queried.")
    slot: JsonInt = Field(ge=0, description="Index of the fetch in the schedule (0 = the first).")
    slot_after_s: float = Field(ge=0, description="The slot's delay after publishing, in seconds.")
    fetched_at: Timestamp = Field(description="When TikTok was asked.")
    view_count: NonNegativeInt | None = Field(default=None, description="Views, as TikTok counts them.")
    like_count: NonNegativeInt | None = Field(default=None, description="Likes.")
    comment_count: NonNegativeInt | None = Field(default=None, description="Comments.")
    share_count: NonNegativeInt | None = Field(default=None, description="Shares.")
    insights_unavailable: InsightsUnavailable | None = Field(
        default=None, description="Why there are no counts (then every count is null)."
    )
    tiktok_log_id: str | None = Field(default=None, description="TikTok's log id of the answer.")
    metadata: dict[str, Any] | None = Field(default=None, description="The post request's metadata, echoed.")


_STATS_EXAMPLE: JsonDict = {
    "account_id": "acc-1",
    "fetched_at": "2026-11-23T10:00:03Z",
    "follower_count": 5120,
    "following_count": 87,
    "likes_count": 40210,
    "video_count": 64,
    "insights_unavailable": None,
    "tiktok_log_id": "20261123100003A1B2C3D4E5F60718293A",
}


class AccountStatsData(Frozen):
    """An account's counts from ``/v2/user/info/`` (the Kafka key is ``account_id``; compacted)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_STATS_EXAMPLE]})

    account_id: str = Field(description="auth_service's id of the account (the Kafka key).")
    fetched_at: Timestamp = Field(description="When TikTok was asked.")
    follower_count: NonNegativeInt | None = Field(default=None, description="Followers.")
    following_count: NonNegativeInt | None = Field(default=None, description="Accounts the creator follows.")
    likes_count: NonNegativeInt | None = Field(default=None, description="Likes on the creator's videos.")
    video_count: NonNegativeInt | None = Field(default=None, description="Public videos.")
    insights_unavailable: InsightsUnavailable | None = Field(
        default=None, description="Why there are no counts (said once per account until its scopes change)."
    )
    tiktok_log_id: str | None = Field(default=None, description="TikTok's log id of the answer.")
