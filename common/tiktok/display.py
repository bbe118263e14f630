"""Display API calls for insights: ``/v2/video/query/`` (scope ``video.list``) and the
``user.info.stats`` fields of ``/v2/user/info/``. See docs/insights.md for the sources.

Both go through :class:`TikTokClient`'s envelope handling, so failures are the same
:class:`TikTokError` / :class:`TikTokTransportError` as every other call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.tiktok.client import TikTokClient
from common.tiktok.errors import TikTokError

MAX_VIDEO_IDS = 20
"""TikTok: "Up to 20 video IDs can be included per request" (/v2/video/query/)."""

VIDEO_QUERY_FIELDS = ("id", "view_count", "like_count", "comment_count", "share_count")
STATS_FIELDS = ("follower_count", "following_count", "likes_count", "video_count")
SCOPE_VIDEO_LIST = "video.list"
SCOPE_USER_STATS = "user.info.stats"


@dataclass(frozen=True)
class VideoCounts:
    video_id: str
    view_count: int
    like_count: int
    comment_count: int
    share_count: int


@dataclass(frozen=True)
class VideoQueryResult:
    videos: dict[str, VideoCounts]  # by video id; an id left out is not the user's public video
    log_id: str


@dataclass(frozen=True)
class AccountStats:
    follower_count: int
    following_count: int
    likes_count: int
    video_count: int
    log_id: str


def _count(raw: object, name: str, endpoint: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise TikTokError("internal_error", f"{name} is not a count: {raw!r}", endpoint=endpoint)
    return raw


async def query_videos(client: TikTokClient, access_token: str, video_ids: Sequence[str]) -> VideoQueryResult:
    """The counts of up to :data:`MAX_VIDEO_IDS` of the user's own public videos."""
    if not 1 <= len(video_ids) <= MAX_VIDEO_IDS:
        raise ValueError(f"between 1 and {MAX_VIDEO_IDS} video ids per query, not {len(video_ids)}")
    data, log_id = await client._api(  # the client's envelope handling, shared
        "/v2/video/query/",
        access_token,
        endpoint="video.query",
        payload={"filters": {"video_ids": list(video_ids)}},
        params={"fields": ",".join(VIDEO_QUERY_FIELDS)},
    )
    raw_videos = data.get("videos")
    videos: dict[str, VideoCounts] = {}
    for raw in raw_videos if isinstance(raw_videos, list) else []:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        videos[raw["id"]] = VideoCounts(
            video_id=raw["id"],
            **{f: _count(raw.get(f), f, "video.query") for f in VIDEO_QUERY_FIELDS if f != "id"},
        )
    return VideoQueryResult(videos=videos, log_id=log_id)


async def account_stats(client: TikTokClient, access_token: str) -> AccountStats:
    data, log_id = await client._api(
        "/v2/user/info/",
        access_token,
        endpoint="user.info",
        method="GET",
        params={"fields": ",".join(STATS_FIELDS)},
    )
    user = data.get("user")
    raw = user if isinstance(user, dict) else {}
    return AccountStats(**{f: _count(raw.get(f), f, "user.info") for f in STATS_FIELDS}, log_id=log_id)
