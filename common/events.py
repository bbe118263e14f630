"""Event models: the envelope and every payload that travels on Kafka.

Events are frozen pydantic models, validated when they come in and serialised only at the Kafka edge
(:func:`encode` / :func:`decode`). Their JSON Schemas are checked in under ``schemas/``
(``python -m common.events`` regenerates them; a test fails when they drift), with test vectors under
``schemas/examples/`` that this decoder and two JSON Schema validators must judge alike.

The payloads live in :mod:`common.event_posts` and :mod:`common.event_accounts`, the field types in
:mod:`common.event_fields`; they are re-exported here, so ``from common.events import ...`` is the
one import a service needs.

Changes are additive; a breaking change is a new ``version`` (README.md, "Event contracts").
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from common.errors import InvalidInput
from common.event_accounts import (
    AUTHORIZATION_REMOVED,
    AccessTokenData,
    AccountData,
    AccountStatus,
    RefreshRequestedData,
)
from common.event_fields import (
    MAX_EVENT_BYTES,
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    UUID_SCHEMA,
    Identifier,
    JsonInt,
    S3Uri,
    Timestamp,
    UuidText,
    is_text,
    text_problem,
    utf16_len,
)
from common.event_insights import AccountStatsData, InsightsUnavailable, PostMetricsData
from common.event_posts import (
    TERMINAL_STATES,
    ErrorInfo,
    MediaRef,
    PostKind,
    PostMode,
    PostRequestedData,
    PostState,
    PostStatusData,
    PrivacyLevel,
    Progress,
    Transfer,
)

__all__ = [
    "AUTHORIZATION_REMOVED",
    "DATA_MODELS",
    "MAX_EVENT_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_METADATA_BYTES",
    "TERMINAL_STATES",
    "AccessTokenData",
    "AccountData",
    "AccountStatsData",
    "AccountStatus",
    "BadEvent",
    "Envelope",
    "ErrorInfo",
    "EventType",
    "Identifier",
    "InsightsUnavailable",
    "MediaRef",
    "PostKind",
    "PostMetricsData",
    "PostMode",
    "PostRequestedData",
    "PostState",
    "PostStatusData",
    "PrivacyLevel",
    "Progress",
    "RefreshRequestedData",
    "S3Uri",
    "Transfer",
    "decode",
    "describe_errors",
    "encode",
    "is_text",
    "json_schemas",
    "parse_json",
    "utcnow",
    "utf16_len",
    "write_schemas",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# The envelope
# --------------------------------------------------------------------------------------------------

D = TypeVar("D", bound=BaseModel)


class Envelope(BaseModel, Generic[D]):
    """Every record's value: the event's identity around its payload ``data``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(description="The event type; also the `type` and `ce_type` headers.")
    version: JsonInt = Field(
        default=1,
        description="The contract version; also the `version` header. A v2 is a new schema file, "
        "announced and produced beside v1 (README.md, Event contracts).",
    )
    event_id: Annotated[uuid.UUID, UuidText, WithJsonSchema(UUID_SCHEMA)] = Field(
        default_factory=uuid.uuid4,
        description="Unique per event; a repeat (delivery is at least once) has the same event_id: "
        "drop it. Also the `ce_id` header.",
    )
    occurred_at: Timestamp = Field(
        default_factory=utcnow,
        description="When it happened (RFC 3339; services write UTC). Also the `ce_time` header.",
    )
    correlation_id: str | None = Field(
        default=None,
        max_length=200,
        description="Carried from a request to every event it causes; set it to trace a post.",
    )
    data: D = Field(description="The payload; its schema depends on type.")


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


CE_SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
SCHEMA_BASE = "https://github.com/tiktok-pipeline/schemas/"
SOURCES: dict[str, str] = {
    EventType.post_requested: "/tiktok-pipeline/producer",
    EventType.post_status: "/tiktok-pipeline/publish_service",
    EventType.refresh_requested: "/tiktok-pipeline/publish_service",
    EventType.account_connected: "/tiktok-pipeline/auth_service",
    EventType.account_refreshed: "/tiktok-pipeline/auth_service",
    EventType.account_reauth_required: "/tiktok-pipeline/auth_service",
    EventType.account_disconnected: "/tiktok-pipeline/auth_service",
    EventType.access_token: "/tiktok-pipeline/auth_service",
}
"""CloudEvents ``source`` of each type: the service that produces it (post requests: any upstream)."""


def schema_id(event_type: str, version: int = 1) -> str:
    return f"{SCHEMA_BASE}{event_type}.v{version}.json"


def headers_for(envelope: Envelope[Any], *, source: str | None = None) -> list[tuple[str, bytes]]:
    """Today's ``type``/``version`` headers, then CloudEvents 1.0 Kafka binary-mode attributes (the
    CloudEvents ``data`` is the whole envelope, so readers of the value see no difference)."""
    return [
        ("type", envelope.type.encode()),
        ("version", str(envelope.version).encode()),
        ("ce_specversion", CE_SPECVERSION.encode()),
        ("ce_id", str(envelope.event_id).encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_source", (source or SOURCES.get(envelope.type, "/tiktok-pipeline")).encode()),
        ("ce_time", envelope.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()),
        ("ce_dataschema", schema_id(envelope.type, envelope.version).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def encode(
    event_type: str,
    data: BaseModel,
    *,
    correlation_id: str | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    source: str | None = None,
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
    return value, headers_for(envelope, source=source)


def describe_errors(exc: ValidationError) -> str:
    """A short, human sentence naming each field that failed and why."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _shape_is_fine(raw: Any) -> bool:
    """True only when :func:`_shape_problem` would find nothing, without building the path of every
    value (intake runs this on every request); False sends the caller to the exact, slower check."""
    if isinstance(raw, str):
        return text_problem(raw) is None
    stack: list[tuple[Any, int]] = [(raw, 0)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, dict | list) or not value:
            continue
        if depth + 1 > MAX_JSON_DEPTH:  # the children are nested too deep
            return False
        items = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict) and any(text_problem(key) is not None for key in value):
            return False
        for item in items:
            if isinstance(item, str):
                if text_problem(item) is not None:
                    return False
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1))
    return True


def _shape_problem(raw: Any) -> BadEvent | None:
    """A BadEvent for JSON nested deeper than MAX_JSON_DEPTH, or holding a NUL character (Postgres
    text and jsonb cannot store one) or a lone surrogate, naming where; None when the value is fine."""
    if _shape_is_fine(raw):
        return None
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return BadEvent(
                f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels (at {path[:200]})",
                code="too_deep",
            )
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                return BadEvent(f"{path[:200] or 'value'}: {problem}", code="wrong_schema")
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key)
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
    """The JSON Schema (draft 2020-12) of each topic's envelope, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    for event_type, model in DATA_MODELS.items():
        name = f"{event_type}.v1.json"
        schema = Envelope[model].model_json_schema()  # type: ignore[valid-type]
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = schema_id(event_type)
        schema["title"] = f"{event_type} (version 1)"
        schema["description"] = (
            f"The value of a {event_type} record: an envelope around its data. Rules JSON Schema cannot "
            "say (UTF-16 lengths, metadata size, JSON depth, NUL characters, lone surrogates, the record "
            "size) are in the descriptions and README.md."
        )
        schema["properties"]["type"] = {
            "const": str(event_type),
            "type": "string",
            "description": "The event type; also the `type` and `ce_type` headers.",
        }
        schema["properties"]["version"] = {**schema["properties"]["version"], "const": 1}
        example = model.model_config.get("json_schema_extra")
        examples = example.get("examples") if isinstance(example, dict) else None
        if isinstance(examples, list) and examples:
            schema["examples"] = [
                {
                    "type": str(event_type),
                    "version": 1,
                    "event_id": "6d2c0c3e-0a43-4f5e-9d0e-1b1d6c1e8f00",
                    "occurred_at": "2026-11-22T10:00:00Z",
                    "correlation_id": "corr-42",
                    "data": examples[0],
                }
            ]
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
