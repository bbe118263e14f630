"""Payloads of ``tiktok.post.requested`` and ``tiktok.post.status``.

Each rule is said twice from this one file: in the model's Python validators, and in the JSON Schema
keywords attached to the model (``if``/``then``, ``const``, ``minItems``...) so that a producer in any
language can check a request before sending it. The test vectors under ``schemas/examples/`` prove
the two say the same thing.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict, JsonValue

from common.event_fields import (
    JSON_INT,
    MAX_METADATA_BYTES,
    Identifier,
    JsonBool,
    JsonInt,
    NonNegativeInt,
    S3Uri,
    Timestamp,
    utf16_max,
)

MAX_PHOTOS = 35
CAPTION_MAX = 2200
TITLE_MAX = 90
DESCRIPTION_MAX = 4000


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


def _utf16_text(limit: int, what: str) -> Any:
    # maxLength only in the schema: Python's UTF-16 check is tighter and names the unit in its message.
    return Field(
        default=None,
        json_schema_extra={"maxLength": limit},
        description=(
            f"{what}. At most {limit} UTF-16 code units, as TikTok counts (most emoji are 2): JSON Schema "
            f"can only count code points, so the schema's maxLength {limit} is the outer bound and a text "
            f"of {limit} code points with emoji in it may still be rejected."
        ),
    )


# --------------------------------------------------------------------------------------------------
# tiktok.post.requested
# --------------------------------------------------------------------------------------------------


class PostKind(StrEnum):
    """A video or a photo post (1 to 35 images)."""

    video = "video"
    photo = "photo"


class PostMode(StrEnum):
    """direct: published on the creator's profile; draft: sent to the creator's TikTok inbox."""

    direct = "direct"
    draft = "draft"


class Transfer(StrEnum):
    """How TikTok gets the bytes: publish_service uploads them, or TikTok pulls them from a URL."""

    file_upload = "file_upload"
    pull_from_url = "pull_from_url"


class PrivacyLevel(StrEnum):
    """Who may see a direct post; must be one the creator's TikTok settings offer."""

    PUBLIC_TO_EVERYONE = "PUBLIC_TO_EVERYONE"
    MUTUAL_FOLLOW_FRIENDS = "MUTUAL_FOLLOW_FRIENDS"
    FOLLOWER_OF_CREATOR = "FOLLOWER_OF_CREATOR"
    SELF_ONLY = "SELF_ONLY"


class MediaRef(Frozen):
    """One media object in S3."""

    uri: S3Uri


def _given(field: str, schema: JsonDict) -> JsonDict:
    return {"properties": {field: schema}, "required": [field]}


_NOTHING: JsonDict = {"type": "null"}

_COVER_INSIDE_PHOTOS: list[JsonValue] = [
    {
        "if": _given("cover_index", {"type": "integer", "minimum": n}),
        "then": _given("photos", {"minItems": n + 1}),
    }
    for n in range(1, MAX_PHOTOS)
]
"""cover_index < len(photos) for photo posts, which JSON Schema cannot compare directly: one if/then per
count."""

POST_REQUEST_RULES: list[JsonValue] = [
    {
        "description": "A video post needs video.uri and carries no photos, title or description.",
        "if": _given("kind", {"const": "video"}),
        "then": {
            "required": ["video"],
            "properties": {
                "video": {"type": "object"},
                "photos": {"type": ["array", "null"], "maxItems": 0},
                "title": _NOTHING,
                "description": _NOTHING,
            },
        },
    },
    {
        "description": (
            "A photo post needs 1 to 35 photos and cover_index inside them, transfer=pull_from_url "
            "(TikTok accepts photos only that way), and carries no video, caption, duet or stitch."
        ),
        "if": _given("kind", {"const": "photo"}),
        "then": {
            "required": ["photos", "cover_index", "transfer"],
            "properties": {
                "photos": {"type": "array", "minItems": 1},
                "cover_index": {"type": "integer", "maximum": MAX_PHOTOS - 1},
                "transfer": {"const": "pull_from_url"},
                "video": _NOTHING,
                "caption": _NOTHING,
                "disable_duet": {"const": False},
                "disable_stitch": {"const": False},
            },
            "allOf": _COVER_INSIDE_PHOTOS,
        },
    },
    {
        "description": "A direct post needs privacy_level: TikTok forbids a default.",
        "if": _given("mode", {"const": "direct"}),
        "then": {"required": ["privacy_level"], "properties": {"privacy_level": {"type": "string"}}},
    },
    {
        "description": "Branded content cannot be SELF_ONLY.",
        "if": _given("brand_content_toggle", {"const": True}),
        "then": {"properties": {"privacy_level": {"not": {"const": "SELF_ONLY"}}}},
    },
]

_POST_EXAMPLE: JsonDict = {
    "post_id": "campaign-42:clip-7",
    "account_id": "acc-1",
    "kind": "video",
    "mode": "direct",
    "video": {"uri": "s3://media/2026/11/clip.mp4"},
    "caption": "Autumn in the hills #travel",
    "privacy_level": "PUBLIC_TO_EVERYONE",
}


class PostRequestedData(Frozen):
    """An upstream system asks for one post. ``post_id`` is its idempotency key."""

    model_config = ConfigDict(json_schema_extra={"allOf": POST_REQUEST_RULES, "examples": [_POST_EXAMPLE]})

    post_id: Identifier = Field(
        description="The upstream's idempotency key: the same post_id again is a no-op, and with a "
        "different payload it is rejected (duplicate_post_id_conflict).",
        examples=["campaign-42:clip-7"],
    )
    account_id: Identifier = Field(
        description="The connected TikTok account to post as (auth_service's account_id); also the "
        "Kafka key.",
        examples=["acc-1"],
    )
    kind: PostKind = Field(description="video or photo.")
    mode: PostMode = Field(description="direct (published) or draft (to the creator's inbox).")
    transfer: Transfer = Field(
        default=Transfer.file_upload, description="file_upload (default) or pull_from_url; photos: pull only."
    )
    video: MediaRef | None = Field(default=None, description="The video, for kind=video (required there).")
    photos: list[MediaRef] | None = Field(
        default=None, max_length=MAX_PHOTOS, description="1 to 35 images, for kind=photo (required there)."
    )
    cover_index: NonNegativeInt | None = Field(
        default=None, description="Which photo is the cover (0-based, inside photos); kind=photo."
    )
    caption: Annotated[str | None, utf16_max(CAPTION_MAX)] = _utf16_text(
        CAPTION_MAX, "The video's caption (TikTok's title); video only"
    )
    title: Annotated[str | None, utf16_max(TITLE_MAX)] = _utf16_text(TITLE_MAX, "The photo post's title")
    description: Annotated[str | None, utf16_max(DESCRIPTION_MAX)] = _utf16_text(
        DESCRIPTION_MAX, "The photo post's description"
    )
    privacy_level: PrivacyLevel | None = Field(
        default=None, description="Required for direct posts; must be among the creator's options."
    )
    disable_comment: JsonBool = Field(default=False, description="Turn comments off.")
    disable_duet: JsonBool = Field(default=False, description="Turn duets off (video only).")
    disable_stitch: JsonBool = Field(default=False, description="Turn stitches off (video only).")
    video_cover_timestamp_ms: Annotated[int, Field(ge=0, le=600_000), JSON_INT] | None = Field(
        default=None, description="Which frame is the video's cover, in ms from the start."
    )
    brand_content_toggle: JsonBool = Field(
        default=False, description="Paid partnership (branded content); never SELF_ONLY."
    )
    brand_organic_toggle: JsonBool = Field(default=False, description="Promotes the creator's own business.")
    is_aigc: JsonBool = Field(default=False, description="The content is AI-generated.")
    auto_add_music: JsonBool = Field(default=False, description="Let TikTok add music (photo posts).")
    publish_at: Timestamp | None = Field(
        default=None,
        description="Publish no earlier than this (RFC 3339 with a zone); absent: now. It must also "
        "stay in range once converted to UTC (not 9999-12-31 with a negative offset).",
        examples=["2026-11-22T10:00:00Z"],
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Opaque, echoed back on every status event; at most {MAX_METADATA_BYTES} bytes as "
        "compact JSON (not expressible in JSON Schema: checked by publish_service).",
    )

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
            raise ValueError(f"is larger than {MAX_METADATA_BYTES} bytes as JSON")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PostRequestedData:
        # Each check here is also in POST_REQUEST_RULES, for readers of the JSON Schema.
        if self.kind is PostKind.video:
            self._check_video()
        else:
            self._check_photo()
        if self.mode is PostMode.direct and self.privacy_level is None:
            raise ValueError("a direct post needs privacy_level (TikTok forbids a default)")
        if self.brand_content_toggle and self.privacy_level is PrivacyLevel.SELF_ONLY:
            raise ValueError("branded content cannot be SELF_ONLY")
        return self

    def _check_video(self) -> None:
        if self.video is None:
            raise ValueError("a video post needs video.uri")
        if self.photos:
            raise ValueError("a video post cannot carry photos")
        if self.title is not None or self.description is not None:
            raise ValueError("title and description are for photo posts; a video uses caption")

    def _check_photo(self) -> None:
        if not self.photos:
            raise ValueError("a photo post needs 1 to 35 photos")
        if self.video is not None:
            raise ValueError("a photo post cannot carry a video")
        if self.transfer is not Transfer.pull_from_url:
            raise ValueError("TikTok accepts photos only with transfer=pull_from_url")
        if self.cover_index is None:
            raise ValueError("a photo post needs cover_index")
        if self.cover_index >= len(self.photos):
            raise ValueError(f"cover_index {self.cover_index} is outside the {len(self.photos)} photos")
        if self.caption is not None:
            raise ValueError("a photo post uses title and description, not caption")
        if self.disable_duet or self.disable_stitch:
            raise ValueError("duet and stitch do not exist for photo posts")

    def media_uris(self) -> list[str]:
        if self.video is not None:
            return [self.video.uri]
        return [p.uri for p in self.photos or []]


# --------------------------------------------------------------------------------------------------
# tiktok.post.status
# --------------------------------------------------------------------------------------------------


class PostState(StrEnum):
    """Where the post is. Final: published, inbox_delivered, failed, rejected, cancelled (see
    publish_service/README.md for the state machine)."""

    received = "received"
    scheduled = "scheduled"
    validating = "validating"
    uploading = "uploading"
    processing = "processing"
    published = "published"
    inbox_delivered = "inbox_delivered"
    failed = "failed"
    rejected = "rejected"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        PostState.published,
        PostState.inbox_delivered,
        PostState.failed,
        PostState.rejected,
        PostState.cancelled,
    }
)


class Progress(Frozen):
    """Upload progress, on uploading events."""

    bytes_sent: JsonInt = Field(ge=0, description="Bytes TikTok has acknowledged so far.")
    bytes_total: JsonInt = Field(ge=0, description="Bytes in all.")


class ErrorInfo(Frozen):
    """Why a post failed or was rejected."""

    code: str = Field(
        description="Stable machine-readable reason (publish_service/README.md lists them), e.g. "
        "wrong_schema, bucket_not_allowed, spam_risk_too_many_posts."
    )
    message: str = Field(description="A human sentence naming what was wrong.")
    retryable: JsonBool = Field(default=False, description="Whether sending the same request later may work.")
    tiktok_log_id: str | None = Field(default=None, description="TikTok's log id, for their support.")


_STATUS_EXAMPLE: JsonDict = {
    "post_id": "campaign-42:clip-7",
    "account_id": "acc-1",
    "seq": 5,
    "state": "published",
    "attempt": 1,
    "progress": None,
    "publish_id": "v_pub_file~v2-1.7309",
    "tiktok_post_ids": ["7435318327519430913"],
    "error": None,
    "metadata": None,
}


class PostStatusData(Frozen):
    """One step of a post's life; several per post, in ``seq`` order per post (the key is account_id)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_STATUS_EXAMPLE]})

    post_id: str = Field(
        description="The request's post_id (for a record that could not be read: unparseable:topic:"
        "partition:offset)."
    )
    account_id: str = Field(description="The request's account_id.")
    seq: JsonInt = Field(ge=0, description="Increases by one per event of this post: order by it.")
    state: PostState = Field(description="The state this event reports.")
    attempt: JsonInt = Field(default=0, ge=0, description="Which TikTok attempt (0 before the first).")
    progress: Progress | None = Field(default=None, description="Upload progress, while uploading.")
    publish_id: str | None = Field(default=None, description="TikTok's publish_id, once init succeeded.")
    tiktok_post_ids: list[str] = Field(
        default_factory=list, description="The public post ids, once TikTok gives them (public posts)."
    )
    error: ErrorInfo | None = Field(default=None, description="On failed and rejected.")
    metadata: dict[str, Any] | None = Field(default=None, description="The request's metadata, echoed.")
