"""Video and account counts for the Display API emulation (``/v2/video/query/``, user.info.stats).

Counts grow with the sandbox clock along a saturating curve: a video gets most of its views in its
first days, ``views(t) = reach * (1 - exp(-t / tau))`` with ``t`` the time since it became public;
likes, comments and shares are fixed fractions of views. ``reach`` and ``tau`` come from a hash of
the video id, so a run is reproducible. A seed (control API) sets the counts at the current clock;
growth continues from there. A creator's account counts add their public videos' counts to the
creator's seeded values.

The book follows the store's posts: a post gets a video record when its public post id appears.
Seeded videos (no upload behind them) can be added too, for tests that need many published posts.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ControlError
from .store import Store

Visibility = Literal["public", "private", "deleted"]

VIDEO_FIELDS = (
    "id",
    "create_time",
    "cover_image_url",
    "share_url",
    "video_description",
    "duration",
    "height",
    "width",
    "title",
    "embed_html",
    "embed_link",
    "like_count",
    "comment_count",
    "share_count",
    "view_count",
)
COUNT_FIELDS = ("view_count", "like_count", "comment_count", "share_count")
LIKE_RATE, COMMENT_RATE, SHARE_RATE = 0.08, 0.005, 0.003
FOLLOWS_PER_VIEW = 0.01
MAX_QUERY_IDS = 20


@dataclass
class Video:
    video_id: str
    username: str
    published_at: float
    title: str = ""
    duration: int = 0
    visibility: Visibility = "public"
    growth: float = 1.0  # multiplies the curve; 0 stops growth
    base: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0))
    base_at: float | None = None  # the clock at the last seed; None: counts are the curve alone

    def _curve(self, at: float) -> float:
        digest = hashlib.sha256(self.video_id.encode()).digest()
        reach = 2_000 + int.from_bytes(digest[:4], "big") % 98_000  # 2k..100k views in the long run
        tau = 86_400.0 * (0.5 + (digest[4] % 40) / 10)  # half a day to four and a half days
        age = max(0.0, at - self.published_at)
        return self.growth * reach * (1.0 - math.exp(-age / tau))

    def counts(self, now: float) -> dict[str, int]:
        start = self._curve(self.base_at) if self.base_at is not None else 0.0
        views = max(0.0, self._curve(now) - start)
        grown = {
            "view_count": views,
            "like_count": views * LIKE_RATE,
            "comment_count": views * COMMENT_RATE,
            "share_count": views * SHARE_RATE,
        }
        return {k: self.base[k] + int(grown[k]) for k in COUNT_FIELDS}

    def fields(self, now: float) -> dict[str, Any]:
        counts = self.counts(now)
        share = f"https://www.tiktok.com/@{self.username}/video/{self.video_id}"
        return {
            "id": self.video_id,
            "create_time": int(self.published_at),
            "cover_image_url": f"https://p16-sandbox.tiktokcdn.com/obj/cover/{self.video_id}.jpeg",
            "share_url": share,
            "video_description": self.title,
            "duration": self.duration,
            "height": 1280,
            "width": 720,
            "title": self.title,
            "embed_html": f'<blockquote class="tiktok-embed" cite="{share}"></blockquote>',
            "embed_link": f"https://www.tiktok.com/embed/v2/{self.video_id}",
            **counts,
        }


class VideoBook:
    """Every video the sandbox knows, by public post id."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._posts_seen: int | None = None
        self.videos: dict[str, Video] = {}

    def sync(self) -> None:
        """Pick up posts that became public since the last look; forget everything after a reset."""
        if self._posts_seen != id(self._store.posts):
            self._posts_seen = id(self._store.posts)
            self.videos = {}
        for post in self._store.posts.values():
            for pid in post.post_ids:
                video_id = str(pid)
                if video_id not in self.videos:
                    at = post.moderation_until or post.completed_at or post.created_at
                    title = str(post.post_info.get("title") or "")
                    self.videos[video_id] = Video(video_id, post.username, at, title=title)

    def get(self, video_id: str) -> Video:
        self.sync()
        video = self.videos.get(video_id)
        if video is None:
            raise ControlError(404, f"no video {video_id}")
        return video

    def add(self, username: str, published_at: float | None = None, title: str = "") -> Video:
        """A public video with no upload behind it (tests that need many published posts)."""
        self._store.creator(username)  # 404 for an unknown creator
        self.sync()
        video_id = str(self._store.seq.post_id())
        now = self._store.now()
        video = Video(video_id, username, now if published_at is None else published_at, title=title)
        self.videos[video_id] = video
        return video

    def seed(self, video: Video, body: dict[str, Any]) -> None:
        """Set counts at the current clock, visibility and growth; unknown keys are refused."""
        allowed = {*COUNT_FIELDS, "visibility", "growth"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ControlError(400, f"unknown video fields: {', '.join(unknown)}")
        now = self._store.now()
        if any(k in body for k in COUNT_FIELDS):
            current = video.counts(now)
            for k in COUNT_FIELDS:
                value = body.get(k, current[k])
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ControlError(400, f"{k} must be a non-negative integer")
                video.base[k] = value
            video.base_at = now
        if "growth" in body:
            growth = body["growth"]
            if not isinstance(growth, int | float) or isinstance(growth, bool) or growth < 0:
                raise ControlError(400, "growth must be a non-negative number")
            current = video.counts(now)
            video.base, video.base_at, video.growth = current, now, float(growth)
        if "visibility" in body:
            if body["visibility"] not in ("public", "private", "deleted"):
                raise ControlError(400, "visibility must be public, private or deleted")
            if video.visibility == "deleted" and body["visibility"] != "deleted":
                raise ControlError(409, "a deleted video stays deleted")
            video.visibility = body["visibility"]

    def visible_to(self, username: str, video_id: str) -> Video | None:
        """The video if it is ``username``'s and public: what video.list may read."""
        video = self.videos.get(video_id)
        if video is None or video.username != username or video.visibility != "public":
            return None
        return video

    def account_counts(self, username: str) -> dict[str, int]:
        """The creator's seeded counts plus what their public videos earned."""
        self.sync()
        seed = self._store.creator(username).seed
        now = self._store.now()
        public = [v for v in self.videos.values() if v.username == username and v.visibility == "public"]
        views = sum(v.counts(now)["view_count"] for v in public)
        likes = sum(v.counts(now)["like_count"] for v in public)
        return {
            "follower_count": seed.follower_count + int(views * FOLLOWS_PER_VIEW),
            "following_count": seed.following_count,
            "likes_count": seed.likes_count + likes,
            "video_count": seed.video_count + len(public),
        }

    def describe(self, video: Video) -> dict[str, Any]:
        return {
            "video_id": video.video_id,
            "username": video.username,
            "published_at": video.published_at,
            "visibility": video.visibility,
            "growth": video.growth,
            **video.counts(self._store.now()),
        }
