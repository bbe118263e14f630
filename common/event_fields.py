"""The field types events are built from, each carrying its rule twice from one source: as a Python
check and as the JSON Schema keyword that says the same thing to readers in other languages.

Patterns are written for ECMA-262 (what JSON Schema specifies) *and* Python's ``re``: no lookaround,
so RE2-based validators (Go) read them too, and Python checks them with ``fullmatch`` (Python's ``$``
would accept a trailing newline that ECMA-262's does not).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, WithJsonSchema

MAX_EVENT_BYTES = 256 * 1024
"""A post request larger than this is refused before parsing (``too_large``)."""

MAX_METADATA_BYTES = 16 * 1024

MAX_JSON_DEPTH = 32
"""Deeper JSON is refused (``too_deep``): no event needs it, and recursion in the parser, the
validators and Postgres' jsonb must not be reachable from the outside."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit TikTok counts captions in (an emoji is often 2)."""
    return len(text.encode("utf-16-le")) // 2


def utf16_max(limit: int) -> AfterValidator:
    """Python's check of a UTF-16 length. JSON Schema's ``maxLength`` counts code points, so the schema
    says ``maxLength: limit`` (never looser than the truth: a code point is at least one unit) and the
    exact rule in the description."""

    def check(value: str | None) -> str | None:
        if value is not None and utf16_len(value) > limit:
            raise ValueError(f"is {utf16_len(value)} UTF-16 code units long; TikTok allows at most {limit}")
        return value

    return AfterValidator(check)


# ------------------------------------------------------------------------------------------ s3 URIs

S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[^\x00-\x1f]{1,1024}$"
S3_DOT_SEGMENT_PATTERN = r"^s3://[^/]*/(.*/)?\.\.?(/.*)?$"
"""A key with a ``.`` or ``..`` segment: a pull URL is <public base>/<bucket>/<key>, and ``../`` would
leave the allowed bucket."""

_S3_URI = re.compile(S3_URI_PATTERN)
_S3_DOT_SEGMENT = re.compile(S3_DOT_SEGMENT_PATTERN)


def _check_s3_uri(value: str) -> str:
    if not _S3_URI.fullmatch(value):
        raise ValueError("must be an s3://bucket/key URI")
    if _S3_DOT_SEGMENT.fullmatch(value):
        raise ValueError("the key must not contain '.' or '..' path segments")
    return value


S3Uri = Annotated[
    str,
    Field(
        max_length=1100,
        description=(
            "s3://bucket/key: a bucket of 3 to 63 lower-case letters, digits, dots and hyphens, then a "
            "key of 1 to 1024 characters without control characters and without '.' or '..' segments. "
            "The bucket must also be in publish_service's allow-list (checked there, not here)."
        ),
        examples=["s3://media/2026/11/clip.mp4"],
        json_schema_extra={"pattern": S3_URI_PATTERN, "not": {"pattern": S3_DOT_SEGMENT_PATTERN}},
    ),
    AfterValidator(_check_s3_uri),
]


# ----------------------------------------------------------------------------------------- strings

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]*$"

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)]
"""Checked by pydantic's regex engine, whose ``$`` is the end of the text, as in ECMA-262."""

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)


def _uuid_text(value: Any) -> Any:
    if isinstance(value, str) and not _UUID.fullmatch(value):
        raise ValueError("must be a UUID in its 8-4-4-4-12 hexadecimal form")
    return value


UuidText = BeforeValidator(_uuid_text)
UUID_SCHEMA = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}


# --------------------------------------------------------------------------------------- date-times

RFC3339_PATTERN = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+\-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""RFC 3339 with a zone, as JSON Schema's ``date-time`` format, narrowed to what every reader parses the
same way: upper-case ``T`` and ``Z``, no leap second, at most microseconds, years 1000 to 9999."""
_RFC3339 = re.compile(RFC3339_PATTERN)


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time and must carry a timezone (e.g. 2026-11-22T10:00:00Z or +01:00)"
        )
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a timezone (RFC 3339, e.g. 2026-11-22T10:00:00Z)")
    try:  # 9999-12-31T23:59:59-14:00 is year 10000 in UTC: Postgres (asyncpg) cannot store it
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
    return value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_aware),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}),
]
"""An RFC 3339 date-time that must carry its zone."""


# -------------------------------------------------------------------------------- numbers, booleans


def _json_int(value: Any) -> Any:
    # pydantic's lax mode would read "5" or true as an integer; JSON Schema's "integer" does not.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")  # noqa: TRY004 (pydantic reports only ValueError)
    return value


JSON_INT = BeforeValidator(_json_int)
JsonInt = Annotated[int, JSON_INT]
NonNegativeInt = Annotated[int, Field(ge=0), JSON_INT]
MAX_BIGINT = 2**63 - 1
Version = Annotated[int, Field(ge=0, le=MAX_BIGINT), JSON_INT]
"""A token version: it must fit the signed 64-bit columns (``bigint``) both services keep it in."""
"""Bounds go before JSON_INT: after it (or on an optional field's Field) pydantic writes them into the
schema as "ge"/"le", which no JSON Schema reader knows."""
JsonBool = StrictBool


# -------------------------------------------------------------------------------------------- text


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text: JSON may carry lone surrogates (``"\\ud800"``), which
    no UTF-8 encoder, and so no event, row or log line, can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    if not is_text(value):
        return "contains a lone UTF-16 surrogate (not valid Unicode text)"
    return None
