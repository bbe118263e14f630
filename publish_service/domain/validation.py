"""Checks a post must pass before any byte goes to TikTok, and the init bodies built from it. Pure.

Rejections carry a stable ``code`` for the status event. Interaction toggles the creator has turned
off are forced off (TikTok does the same, and the UX rules grey them out) rather than rejected:
a request that leaves comments on for a creator who allows none is not wrong, just overruled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from common.events import PostMode, PostRequestedData, utf16_len
from common.tiktok.chunks import MAX_VIDEO_SIZE
from publish_service.domain.media import MediaError, VideoInfo

API_MAX_DURATION_S = 600  # the longest video any API client may send (§5.4)
MAX_PHOTO_BYTES = 20 * 1024 * 1024
VIDEO_CAPTION_MAX = 2200
PHOTO_TITLE_MAX = 90
PHOTO_DESCRIPTION_MAX = 4000
DURATION_TOLERANCE_S = 0.5  # container durations round; don't reject 180.02 s for a 180 s limit


class CreatorInfo(Protocol):
    """What creator_info tells about the creator (``common.tiktok.client.CreatorInfo`` has this shape)."""

    @property
    def privacy_level_options(self) -> Sequence[str]: ...
    @property
    def comment_disabled(self) -> bool: ...
    @property
    def duet_disabled(self) -> bool: ...
    @property
    def stitch_disabled(self) -> bool: ...
    @property
    def max_video_post_duration_sec(self) -> int: ...


class Rejected(Exception):
    """The post can never be published as requested."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_bucket(bucket: str, allowed: Iterable[str]) -> None:
    if bucket not in set(allowed):
        raise Rejected("bucket_not_allowed", f"bucket {bucket!r} is not in the allow-list")


def check_captions(post: PostRequestedData) -> None:
    # The event model checks these too; a post created before a model change is checked again here.
    if post.caption is not None and utf16_len(post.caption) > VIDEO_CAPTION_MAX:
        raise Rejected("caption_too_long", f"the caption exceeds {VIDEO_CAPTION_MAX} UTF-16 units")
    if post.title is not None and utf16_len(post.title) > PHOTO_TITLE_MAX:
        raise Rejected("title_too_long", f"the title exceeds {PHOTO_TITLE_MAX} UTF-16 units")
    if post.description is not None and utf16_len(post.description) > PHOTO_DESCRIPTION_MAX:
        raise Rejected(
            "description_too_long", f"the description exceeds {PHOTO_DESCRIPTION_MAX} UTF-16 units"
        )


def check_video_size(size: int) -> None:
    if size <= 0:
        raise Rejected("empty_media", "the video object is empty")
    if size > MAX_VIDEO_SIZE:
        raise Rejected("too_large", f"the video is {size} bytes; TikTok accepts at most 4 GiB")


def check_photo_size(size: int) -> None:
    if size <= 0:
        raise Rejected("empty_media", "a photo object is empty")
    if size > MAX_PHOTO_BYTES:
        raise Rejected("too_large", f"a photo is {size} bytes; TikTok accepts at most 20 MB")


def check_video(post: PostRequestedData, info: VideoInfo, creator: CreatorInfo | None) -> None:
    limit = float(API_MAX_DURATION_S)
    if post.mode is PostMode.direct and creator is not None:
        limit = min(limit, float(creator.max_video_post_duration_sec))
    if info.duration_s > limit + DURATION_TOLERANCE_S:
        raise Rejected(
            "duration_too_long",
            f"the video lasts {info.duration_s:.1f} s; this creator may post at most {limit:.0f} s",
        )
    if info.duration_s <= 0:
        raise Rejected("wrong_format", "the video has no duration")


def check_against_creator(post: PostRequestedData, creator: CreatorInfo) -> None:
    if post.mode is PostMode.direct:
        if not creator.privacy_level_options:
            raise Rejected("creator_cannot_post", "TikTok offers this creator no privacy level")
        if post.privacy_level is None or post.privacy_level.value not in creator.privacy_level_options:
            raise Rejected(
                "privacy_level_option_mismatch",
                f"privacy_level {post.privacy_level} is not among the creator's options "
                f"{list(creator.privacy_level_options)}",
            )


def media_error(exc: MediaError) -> Rejected:
    return Rejected(exc.code, exc.message)


# ------------------------------------------------------------------------------------------ bodies


@dataclass(frozen=True)
class Interaction:
    disable_comment: bool
    disable_duet: bool
    disable_stitch: bool


def effective_interaction(post: PostRequestedData, creator: CreatorInfo | None) -> Interaction:
    c = creator
    return Interaction(
        disable_comment=post.disable_comment or bool(c and c.comment_disabled),
        disable_duet=post.disable_duet or bool(c and c.duet_disabled),
        disable_stitch=post.disable_stitch or bool(c and c.stitch_disabled),
    )


def video_post_info(post: PostRequestedData, creator: CreatorInfo | None) -> dict[str, Any]:
    """``post_info`` for a Direct Post video init; every toggle sent explicitly (§4.2)."""
    inter = effective_interaction(post, creator)
    info: dict[str, Any] = {
        "privacy_level": post.privacy_level.value if post.privacy_level else None,
        "disable_comment": inter.disable_comment,
        "disable_duet": inter.disable_duet,
        "disable_stitch": inter.disable_stitch,
        "brand_content_toggle": post.brand_content_toggle,
        "brand_organic_toggle": post.brand_organic_toggle,
        "is_aigc": post.is_aigc,
    }
    if post.caption is not None:
        info["title"] = post.caption
    if post.video_cover_timestamp_ms is not None:
        info["video_cover_timestamp_ms"] = post.video_cover_timestamp_ms
    return info


def photo_post_info(post: PostRequestedData, creator: CreatorInfo | None) -> dict[str, Any]:
    """``post_info`` for a photo init; no duet or stitch (§4.4), privacy only for direct posts."""
    info: dict[str, Any] = {}
    if post.title is not None:
        info["title"] = post.title
    if post.description is not None:
        info["description"] = post.description
    if post.mode is PostMode.direct:
        inter = effective_interaction(post, creator)
        info.update(
            privacy_level=post.privacy_level.value if post.privacy_level else None,
            disable_comment=inter.disable_comment,
            auto_add_music=post.auto_add_music,
            brand_content_toggle=post.brand_content_toggle,
            brand_organic_toggle=post.brand_organic_toggle,
        )
    return info


def file_source_info(video_size: int, chunk_size: int, total_chunks: int) -> dict[str, Any]:
    return {
        "source": "FILE_UPLOAD",
        "video_size": video_size,
        "chunk_size": chunk_size,
        "total_chunk_count": total_chunks,
    }


def pull_source_info(url: str) -> dict[str, Any]:
    return {"source": "PULL_FROM_URL", "video_url": url}


def photo_source_info(urls: list[str], cover_index: int) -> dict[str, Any]:
    return {"source": "PULL_FROM_URL", "photo_cover_index": cover_index, "photo_images": urls}


def photo_post_mode(post: PostRequestedData) -> str:
    return "DIRECT_POST" if post.mode is PostMode.direct else "MEDIA_UPLOAD"


def expects_public_id(post: PostRequestedData) -> bool:
    """Whether TikTok will eventually give this post a public id worth waiting for (§4.6)."""
    return (
        post.mode is PostMode.direct
        and post.privacy_level is not None
        and post.privacy_level.value == "PUBLIC_TO_EVERYONE"
    )


def missing_scope(mode: PostMode, granted: tuple[str, ...]) -> str | None:
    """The TikTok permission this post needs and the account lacks (#12.15), or None.

    A direct post needs ``video.publish``; a draft needs ``video.upload``. An account whose scopes
    are not known yet (no event carried them) is not judged here: TikTok's own refusal still applies.
    """
    if not granted:
        return None
    needed = "video.publish" if mode is PostMode.direct else "video.upload"
    return None if needed in granted else needed
