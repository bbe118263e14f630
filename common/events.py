"""Event models: the envelope and every payload that travels on Kafka.

Events are frozen pydantic models, validated when they come in and serialised only at the Kafka edge
(:func:`encode` / :func:`decode`). Their JSON Schemas are checked in under ``schemas/``
(``python -m common.events`` regenerates them; a test fails when they drift).

Changes are additive; a breaking change is a new ``version``.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.errors import InvalidInput

MAX_EVENT_BYTES = 256 * 1024
"""A post request larger than this is refused before parsing (``too_large``)."""

MAX_METADATA_BYTES = 16 * 1024

MAX_JSON_DEPTH = 32
"""Deeper JSON is refused (``too_deep``): no event needs it, and recursion in the parser, the
validators and Postgres' jsonb must not be reachable from the outside."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit TikTok counts captions in (an emoji is often 2)."""
    return len(text.encode("utf-16-le")) // 2


def _utf16_max(limit: int) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None and utf16_len(value) > limit:
            raise ValueError(f"is {utf16_len(value)} UTF-16 code units long; TikTok allows at most {limit}")
        return value

    return AfterValidator(check)


_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>[^\x00-\x1f]{1,1024})$")


def _check_s3_uri(value: str) -> str:
    match = _S3_URI.match(value)
    if not match:
        raise ValueError("must be an s3://bucket/key URI")
    if {".", ".."} & set(match["key"].split("/")):
        # A pull URL is <public base>/<bucket>/<key>: "../" would leave the allowed bucket.
        raise ValueError("the key must not contain '.' or '..' path segments")
    return value


S3Uri = Annotated[str, Field(max_length=1100), AfterValidator(_check_s3_uri)]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@\-]*$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


# --------------------------------------------------------------------------------------------------
# tiktok.post.requested
# --------------------------------------------------------------------------------------------------


class PostKind(StrEnum):
    video = "video"
    photo = "photo"


class PostMode(StrEnum):
    direct = "direct"
    draft = "draft"


class Transfer(StrEnum):
    file_upload = "file_upload"
    pull_from_url = "pull_from_url"


class PrivacyLevel(StrEnum):
    PUBLIC_TO_EVERYONE = "PUBLIC_TO_EVERYONE"
    MUTUAL_FOLLOW_FRIENDS = "MUTUAL_FOLLOW_FRIENDS"
    FOLLOWER_OF_CREATOR = "FOLLOWER_OF_CREATOR"
    SELF_ONLY = "SELF_ONLY"


class MediaRef(_Frozen):
    uri: S3Uri


class PostRequestedData(_Frozen):
    """An upstream system asks for one post. ``post_id`` is its idempotency key."""

    post_id: Identifier
    account_id: Identifier
    kind: PostKind
    mode: PostMode
    transfer: Transfer = Transfer.file_upload
    video: MediaRef | None = None
    photos: list[MediaRef] | None = Field(default=None, max_length=35)
    cover_index: int | None = Field(default=None, ge=0)
    caption: Annotated[str | None, _utf16_max(2200)] = None
    title: Annotated[str | None, _utf16_max(90)] = None
    description: Annotated[str | None, _utf16_max(4000)] = None
    privacy_level: PrivacyLevel | None = None
    disable_comment: bool = False
    disable_duet: bool = False
    disable_stitch: bool = False
    video_cover_timestamp_ms: int | None = Field(default=None, ge=0, le=600_000)
    brand_content_toggle: bool = False
    brand_organic_toggle: bool = False
    is_aigc: bool = False
    auto_add_music: bool = False
    publish_at: datetime | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("publish_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone (RFC 3339, e.g. 2026-11-22T10:00:00Z)")
        if value is not None:
            try:  # 9999-12-31T23:59:59-14:00 is year 10000 in UTC: Postgres (asyncpg) cannot store it
                value.astimezone(UTC)
            except OverflowError:
                raise ValueError("is out of range once converted to UTC") from None
        return value

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
            raise ValueError(f"is larger than {MAX_METADATA_BYTES} bytes as JSON")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PostRequestedData:
        if self.kind is PostKind.video:
            if self.video is None:
                raise ValueError("a video post needs video.uri")
            if self.photos:
                raise ValueError("a video post cannot carry photos")
            if self.title is not None or self.description is not None:
                raise ValueError("title and description are for photo posts; a video uses caption")
        else:
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
        if self.mode is PostMode.direct and self.privacy_level is None:
            raise ValueError("a direct post needs privacy_level (TikTok forbids a default)")
        if self.brand_content_toggle and self.privacy_level is PrivacyLevel.SELF_ONLY:
            raise ValueError("branded content cannot be SELF_ONLY")
        return self

    def media_uris(self) -> list[str]:
        if self.video is not None:
            return [self.video.uri]
        return [p.uri for p in self.photos or []]


# --------------------------------------------------------------------------------------------------
# tiktok.post.status
# --------------------------------------------------------------------------------------------------


class PostState(StrEnum):
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


class Progress(_Frozen):
    bytes_sent: int = Field(ge=0)
    bytes_total: int = Field(ge=0)


class ErrorInfo(_Frozen):
    code: str
    message: str
    retryable: bool = False
    tiktok_log_id: str | None = None


class PostStatusData(_Frozen):
    post_id: str
    account_id: str
    seq: int = Field(ge=0)
    state: PostState
    attempt: int = Field(default=0, ge=0)
    progress: Progress | None = None
    publish_id: str | None = None
    tiktok_post_ids: list[str] = Field(default_factory=list)
    error: ErrorInfo | None = None
    metadata: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------------
# tiktok.accounts, tiktok.access-tokens, tiktok.token.refresh-requested
# --------------------------------------------------------------------------------------------------


class AccountStatus(StrEnum):
    connected = "connected"
    reauth_required = "reauth_required"
    disconnected = "disconnected"


class AccountData(_Frozen):
    """The public state of an account; the compacted topic keeps the latest per account."""

    account_id: str
    open_id: str
    status: AccountStatus
    scopes: list[str] = Field(default_factory=list)
    display_name: str | None = None
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    token_version: int = 0
    reason: str | None = None


class AccessTokenData(_Frozen):
    """The current access token of an account, encrypted with the transport key (never plain)."""

    account_id: str
    open_id: str
    scopes: list[str]
    token_version: int = Field(ge=0)
    expires_at: datetime
    ciphertext: str


class RefreshRequestedData(_Frozen):
    """publish_service saw ``access_token_invalid`` on ``seen_token_version``; please refresh."""

    account_id: str
    reason: str
    seen_token_version: int | None = None


# --------------------------------------------------------------------------------------------------
# tiktok.post.metrics, tiktok.account.stats (insights, docs/insights.md)
# --------------------------------------------------------------------------------------------------


class InsightsUnavailable(StrEnum):
    """Why an insights event carries no counts."""

    scope_missing = "scope_missing"  # the creator did not grant video.list / user.info.stats
    video_unavailable = "video_unavailable"  # TikTok no longer returns the video: deleted or not public
    query_failed = "query_failed"  # TikTok refused the query repeatedly (not busy, not a scope); slot ends


class PostMetricsData(_Frozen):
    """One scheduled fetch of a published post's counts (key ``post_id``).

    The counts are absent when ``insights_unavailable`` says why; ``scope_missing`` is sent once per
    post, not on every slot.
    """

    post_id: str
    account_id: str
    tiktok_post_id: str
    slot: int = Field(ge=0)  # index in the schedule
    slot_after_s: float = Field(ge=0)  # the slot's delay after publishing
    fetched_at: datetime
    view_count: int | None = Field(default=None, ge=0)
    like_count: int | None = Field(default=None, ge=0)
    comment_count: int | None = Field(default=None, ge=0)
    share_count: int | None = Field(default=None, ge=0)
    insights_unavailable: InsightsUnavailable | None = None
    tiktok_log_id: str | None = None
    metadata: dict[str, Any] | None = None  # the post request's metadata, as given


class AccountStatsData(_Frozen):
    """An account's counts from ``/v2/user/info/`` (key ``account_id``; the topic is compacted)."""

    account_id: str
    fetched_at: datetime
    follower_count: int | None = Field(default=None, ge=0)
    following_count: int | None = Field(default=None, ge=0)
    likes_count: int | None = Field(default=None, ge=0)
    video_count: int | None = Field(default=None, ge=0)
    insights_unavailable: InsightsUnavailable | None = None
    tiktok_log_id: str | None = None


# --------------------------------------------------------------------------------------------------
# The envelope
# --------------------------------------------------------------------------------------------------

D = TypeVar("D", bound=BaseModel)


class Envelope(BaseModel, Generic[D]):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    version: int = 1
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str | None = Field(default=None, max_length=200)
    data: D


class EventType(StrEnum):
    post_requested = "tiktok.post.requested"
    post_status = "tiktok.post.status"
    account_connected = "tiktok.account.connected"
    account_refreshed = "tiktok.account.refreshed"
    account_reauth_required = "tiktok.account.reauth_required"
    account_disconnected = "tiktok.account.disconnected"
    access_token = "tiktok.access_token.issued"  # noqa: S105 (an event name)
    refresh_requested = "tiktok.token.refresh_requested"
    post_metrics = "tiktok.post.metrics"
    account_stats = "tiktok.account.stats"


DATA_MODELS: dict[str, type[BaseModel]] = {
    EventType.post_requested: PostRequestedData,
    EventType.post_status: PostStatusData,
    EventType.account_connected: AccountData,
    EventType.account_refreshed: AccountData,
    EventType.account_reauth_required: AccountData,
    EventType.account_disconnected: AccountData,
    EventType.access_token: AccessTokenData,
    EventType.refresh_requested: RefreshRequestedData,
    EventType.post_metrics: PostMetricsData,
    EventType.account_stats: AccountStatsData,
}


class BadEvent(InvalidInput):
    """An incoming record we cannot accept; ``code`` says why (not_json, wrong_schema, too_large…)."""

    code = "wrong_schema"


def encode(
    event_type: str,
    data: BaseModel,
    *,
    correlation_id: str | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Serialise an event to the bytes and headers that go on Kafka."""
    envelope = Envelope[BaseModel](
        type=event_type,
        data=data,
        correlation_id=correlation_id,
        event_id=event_id or uuid.uuid4(),
        occurred_at=occurred_at or utcnow(),
    )
    value = envelope.model_dump_json(exclude_none=False, serialize_as_any=True).encode()
    headers = [("type", event_type.encode()), ("version", str(envelope.version).encode())]
    return value, headers


def describe_errors(exc: ValidationError) -> str:
    """A short, human sentence naming each field that failed and why."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text: JSON may carry lone surrogates (``"\\ud800"``), which
    no UTF-8 encoder, and so no event, row or log line, can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    if not is_text(value):
        return "contains a lone UTF-16 surrogate (not valid Unicode text)"
    return None


def _shape_problem(raw: Any) -> BadEvent | None:
    """A BadEvent for JSON nested deeper than MAX_JSON_DEPTH, or holding a NUL character (Postgres
    text and jsonb cannot store one) or a lone surrogate, naming where; None when the value is fine."""
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return BadEvent(
                f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels (at {path[:200]})",
                code="too_deep",
            )
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem is not None:
                return BadEvent(f"{path[:200] or 'value'}: {problem}", code="wrong_schema")
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem is not None:
                    return BadEvent(f"{path[:200] or 'object'}: a key {problem}", code="wrong_schema")
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{i}" if path else str(i), depth + 1) for i, item in enumerate(value))
    return None


def parse_json(value: bytes | str) -> Any:
    """``json.loads`` for untrusted input: :class:`BadEvent` ``not_json``, or ``too_deep`` / ``wrong_schema``
    (a NUL character) for JSON the services cannot safely hold."""
    try:
        raw = json.loads(value)
    except RecursionError as exc:
        raise BadEvent(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels", code="too_deep") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise BadEvent(f"the record is not JSON: {exc}", code="not_json") from exc
    problem = _shape_problem(raw)
    if problem is not None:
        raise problem
    return raw


def decode(
    value: bytes | None,
    expected: type[D],
    *,
    expected_type: str | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Envelope[D]:
    """Parse and validate one record; raise :class:`BadEvent` with a code naming the problem."""
    if value is None:
        raise BadEvent("the record has no value", code="empty")
    if len(value) > max_bytes:
        raise BadEvent(f"the record is {len(value)} bytes; the limit is {max_bytes}", code="too_large")
    raw = parse_json(value)
    if not isinstance(raw, dict):
        raise BadEvent("the record is JSON but not an object", code="wrong_schema")
    if expected_type is not None and raw.get("type") != expected_type:
        raise BadEvent(f"type is {raw.get('type')!r}, expected {str(expected_type)!r}", code="wrong_type")
    if raw.get("version", 1) != 1:
        raise BadEvent(
            f"version {raw.get('version')!r} is not supported (this service reads 1)",
            code="unsupported_version",
        )
    try:
        return Envelope[expected].model_validate(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise BadEvent(describe_errors(exc), code="wrong_schema") from exc


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each topic's envelope, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    for event_type, model in DATA_MODELS.items():
        name = f"{event_type}.v1.json"
        schema = Envelope[model].model_json_schema()  # type: ignore[valid-type]
        schema["$id"] = f"https://github.com/tiktok-pipeline/schemas/{name}"
        schema["title"] = f"{event_type} (version 1)"
        schema["properties"]["type"] = {"const": str(event_type), "type": "string"}
        out[name] = schema
    return out


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(__file__).resolve().parent.parent / "schemas"):
        print(path)  # noqa: T201
