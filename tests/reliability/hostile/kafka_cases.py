"""The hostile-input corpus, as data: what a hostile or broken upstream can put on
``tiktok.post.requested``, and what the pipeline must answer.

Each :class:`KafkaCase` builds one record (key, value) from a :class:`Media` context (the connected
account and the objects staged in S3) and names the outcome: the ``error.code`` of the ``rejected``
status event, a phrase its message must contain, and where the record must show up (a status event,
the DLQ with the original bytes, or both). Cases with ``accepted=True`` are hostile-looking but legal
(SQL in a caption, control characters): they must be published with their text intact.

The HTTP cases are in ``http_cases.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REQUESTED = "tiktok.post.requested"
OCCURRED_AT = "2026-11-22T10:00:00Z"
SQL = "'; DROP TABLE publish.posts; --"
EMOJI = "\U0001f600"  # two UTF-16 units, one code point
POISON_POST_ID = "poison-pill"  # the test database refuses to store this post (a trigger)


@dataclass(frozen=True)
class Media:
    """What a case may point at: the connected account and objects staged in the allowed bucket."""

    account_id: str
    bucket: str
    ok: str  # a 2 s MP4
    long: str  # an 8 s MP4 (the creator may post at most 5 s)
    garbage: str  # random bytes named .mp4
    truncated: str  # the first 60 % of an MP4 whose moov is at the end
    empty: str  # zero bytes
    ftyp_only: str  # an ftyp box, then nothing a player could use
    ebml_junk: str  # the WebM magic, then junk


@dataclass(frozen=True)
class Built:
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class KafkaCase:
    id: str
    category: str
    build: Callable[[Media], Built]
    code: str = ""
    phrase: str = ""
    post_id: str | None = None
    """The post_id the status event carries; None: ``unparseable:<topic>:<partition>:<offset>``."""
    dlq: bool = True
    state: str = "rejected"
    """``failed`` for what only TikTok can refuse (then there is no dead letter: the request was valid)."""
    accepted: bool = False
    expect_caption: str | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def envelope(data: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "type": REQUESTED,
        "version": 1,
        "event_id": str(uuid.uuid4()),
        "occurred_at": OCCURRED_AT,
        "data": data,
        **overrides,
    }


def video_post(m: Media, post_id: Any, **fields: Any) -> dict[str, Any]:
    """A draft video post of the account, legal unless ``fields`` make it otherwise."""
    return {
        "post_id": post_id,
        "account_id": m.account_id,
        "kind": "video",
        "mode": "draft",
        "video": {"uri": m.ok},
        **fields,
    }


def direct(m: Media, post_id: str, **fields: Any) -> dict[str, Any]:
    return video_post(m, post_id, mode="direct", privacy_level="SELF_ONLY", **fields)


def as_record(m: Media, body: Any, key: bytes | None = None) -> Built:
    return Built(m.account_id.encode() if key is None else key, json.dumps(body).encode())


def raw(value: bytes | None, key: bytes | None = b"hostile") -> Callable[[Media], Built]:
    return lambda m: Built(key, value)


def data_case(post_id: Any, **fields: Any) -> Callable[[Media], Built]:
    return lambda m: as_record(m, envelope(video_post(m, post_id, **fields)))


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _deep_json(depth: int) -> bytes:
    return b'{"type":"tiktok.post.requested","version":1,"data":' + b"[" * depth + b"]" * depth + b"}"


def _deep_metadata(m: Media) -> Built:
    # Built by hand: json.dumps itself refuses this depth.
    head = json.dumps(envelope(video_post(m, "deep-metadata")))[:-2]  # ...,"data": {...} without "}}"
    deep = b'"metadata":' + b'{"a":' * 5000 + b"1" + b"}" * 5000
    return Built(m.account_id.encode(), head.encode() + b", " + deep + b"}}")


def _conflict_first(m: Media) -> Built:
    return as_record(m, envelope(video_post(m, "dup-conflict", video={"uri": m.garbage}, caption="first")))


def _conflict_second(m: Media) -> Built:
    return as_record(m, envelope(video_post(m, "dup-conflict", video={"uri": m.garbage}, caption="other")))


def _wrong_header_type(m: Media) -> Built:
    return as_record(m, envelope(video_post(m, "wrong-type-status"), type="tiktok.post.status"))


CASES: list[KafkaCase] = [
    # ---------------------------------------------------------------- not JSON at all
    KafkaCase("not_json_brace", "malformed", raw(b"{not json"), "not_json", "not JSON"),
    KafkaCase("not_json_empty_value", "malformed", raw(b""), "not_json", "not JSON"),
    KafkaCase("tombstone_null_value", "malformed", raw(None, b"tombstone"), "empty", "no value"),
    KafkaCase("invalid_utf8", "malformed", raw(b'\xff\xfe{"type": 1}'), "not_json", "not JSON"),
    KafkaCase(
        "truncated_json",
        "malformed",
        raw(b'{"type": "tiktok.post.requested", "data": {"po'),
        "not_json",
        "not JSON",
    ),
    KafkaCase(
        "raw_nul_byte_in_json",
        "null bytes",
        raw(b'{"type": "tiktok.post.req\x00uested"}'),
        "not_json",
        "not JSON",
    ),
    KafkaCase(
        "integer_of_5000_digits",
        "huge fields",
        lambda m: Built(
            m.account_id.encode(), b'{"type": "tiktok.post.requested", "version": ' + b"1" * 5000 + b"}"
        ),
        "not_json",
        "exceeds the limit (4300 digits)",
    ),
    KafkaCase(
        "json_array",
        "wrong types",
        raw(b'[{"type": "tiktok.post.requested"}]'),
        "wrong_schema",
        "not an object",
    ),
    KafkaCase("json_string", "wrong types", raw(b'"tiktok.post.requested"'), "wrong_schema", "not an object"),
    KafkaCase(
        "nan_literal",
        "wrong types",
        raw(b'{"type": "tiktok.post.requested", "version": NaN}'),
        "unsupported_version",
        "version nan is not supported",
    ),
    # ---------------------------------------------------------------- envelope
    KafkaCase(
        "wrong_type",
        "envelope",
        _wrong_header_type,
        "wrong_type",
        "expected 'tiktok.post.requested'",
        post_id="wrong-type-status",
    ),
    KafkaCase(
        "missing_type",
        "envelope",
        lambda m: as_record(m, {k: v for k, v in envelope(video_post(m, "no-type")).items() if k != "type"}),
        "wrong_type",
        "type is None",
        post_id="no-type",
    ),
    KafkaCase(
        "version_2",
        "envelope",
        lambda m: as_record(m, envelope(video_post(m, "v2"), version=2)),
        "unsupported_version",
        "version 2 is not supported",
        post_id="v2",
    ),
    KafkaCase(
        "version_as_string",
        "envelope",
        lambda m: as_record(m, envelope(video_post(m, "v-str"), version="1")),
        "unsupported_version",
        "version '1' is not supported",
        post_id="v-str",
    ),
    KafkaCase(
        "event_id_not_uuid",
        "envelope",
        lambda m: as_record(m, envelope(video_post(m, "bad-event-id"), event_id="'; SELECT 1; --")),
        "wrong_schema",
        "event_id",
        post_id="bad-event-id",
    ),
    KafkaCase(
        "correlation_id_too_long",
        "envelope",
        lambda m: as_record(m, envelope(video_post(m, "long-corr"), correlation_id="c" * 201)),
        "wrong_schema",
        "correlation_id",
        post_id="long-corr",
    ),
    KafkaCase(
        "correlation_id_nul",
        "null bytes",
        lambda m: as_record(m, envelope(video_post(m, "nul-corr"), correlation_id="abc\x00def")),
        "wrong_schema",
        "NUL character",
        post_id="nul-corr",
    ),
    KafkaCase(
        "unknown_envelope_field",
        "envelope",
        lambda m: as_record(m, envelope(video_post(m, "extra-env"), admin=True)),
        "wrong_schema",
        "admin: Extra inputs are not permitted",
        post_id="extra-env",
    ),
    KafkaCase(
        "data_not_object",
        "wrong types",
        lambda m: as_record(m, envelope(["post"])),
        "wrong_schema",
        "data: Input should be",
    ),
    # ---------------------------------------------------------------- wrong types in data
    KafkaCase(
        "post_id_number",
        "wrong types",
        data_case(12345),
        "wrong_schema",
        "data.post_id: Input should be a valid string",
    ),
    KafkaCase(
        "kind_unknown",
        "wrong types",
        data_case("kind-gif", kind="gif"),
        "wrong_schema",
        "data.kind",
        post_id="kind-gif",
    ),
    KafkaCase(
        "disable_comment_list",
        "wrong types",
        data_case("bool-list", disable_comment=[1]),
        "wrong_schema",
        "data.disable_comment",
        post_id="bool-list",
    ),
    KafkaCase(
        "cover_timestamp_infinite",
        "wrong types",
        lambda m: Built(
            m.account_id.encode(),
            json.dumps(envelope(video_post(m, "inf-ts")))
            .replace('"mode": "draft"', '"mode": "draft", "video_cover_timestamp_ms": 1e400')
            .encode(),
        ),
        "wrong_schema",
        "data.video_cover_timestamp_ms",
        post_id="inf-ts",
    ),
    KafkaCase(
        "publish_at_naive",
        "wrong types",
        data_case("naive-at", publish_at="2026-11-23T08:00:00"),
        "wrong_schema",
        "must carry a timezone",
        post_id="naive-at",
    ),
    KafkaCase(
        "publish_at_out_of_range_in_utc",
        "wrong types",
        data_case("far-at", publish_at="9999-12-31T23:59:59-14:00"),
        "wrong_schema",
        "data.publish_at: is out of range once converted to UTC",
        post_id="far-at",
    ),
    KafkaCase(
        "publish_at_garbage",
        "wrong types",
        data_case("garbage-at", publish_at="tomorrow-ish"),
        "wrong_schema",
        "data.publish_at",
        post_id="garbage-at",
    ),
    KafkaCase(
        "unknown_data_field",
        "wrong types",
        data_case("extra-data", is_admin=True),
        "wrong_schema",
        "data.is_admin: Extra inputs are not permitted",
        post_id="extra-data",
    ),
    KafkaCase(
        "direct_without_privacy",
        "rules",
        data_case("no-privacy", mode="direct"),
        "wrong_schema",
        "needs privacy_level",
        post_id="no-privacy",
    ),
    KafkaCase(
        "branded_self_only",
        "rules",
        data_case("branded-private", mode="direct", privacy_level="SELF_ONLY", brand_content_toggle=True),
        "wrong_schema",
        "branded content cannot be SELF_ONLY",
        post_id="branded-private",
    ),
    KafkaCase(
        "photo_with_file_upload",
        "rules",
        lambda m: as_record(
            m,
            envelope(
                {
                    **video_post(m, "photo-file"),
                    "kind": "photo",
                    "video": None,
                    "photos": [{"uri": m.ok}],
                    "cover_index": 0,
                }
            ),
        ),
        "wrong_schema",
        "only with transfer=pull_from_url",
        post_id="photo-file",
    ),
    KafkaCase(
        "photo_36_images",
        "huge fields",
        lambda m: as_record(
            m,
            envelope(
                {
                    **video_post(m, "photo-36"),
                    "kind": "photo",
                    "video": None,
                    "transfer": "pull_from_url",
                    "cover_index": 0,
                    "photos": [{"uri": m.ok}] * 36,
                }
            ),
        ),
        "wrong_schema",
        "at most 35 items",
        post_id="photo-36",
    ),
    # ---------------------------------------------------------------- sizes
    KafkaCase(
        "record_over_256k",
        "huge fields",
        lambda m: Built(m.account_id.encode(), b'{"pad": "' + b"x" * 300_000 + b'"}'),
        "too_large",
        "the limit is 262144",
    ),
    KafkaCase(
        "key_of_900k_with_garbage",
        "huge fields",
        raw(b"{a 900 kB key", b"k" * 900_000),
        "not_json",
        "not JSON",
        notes="the status event carries the account id from the key, cut to 128 characters",
    ),
    KafkaCase(
        "caption_250k",
        "huge fields",
        data_case("huge-caption", caption="c" * 250_000),
        "wrong_schema",
        "TikTok allows at most 2200",
        post_id="huge-caption",
    ),
    KafkaCase(
        "caption_emoji_2202_utf16",
        "huge fields",
        data_case("emoji-caption", caption=EMOJI * 1101),
        "wrong_schema",
        "is 2202 UTF-16 code units long",
        post_id="emoji-caption",
    ),
    KafkaCase(
        "post_id_129_chars",
        "huge fields",
        data_case("p" * 129),
        "wrong_schema",
        "data.post_id: String should have at most 128 characters",
    ),
    KafkaCase(
        "metadata_over_16k",
        "huge fields",
        data_case("big-meta", metadata={"blob": "m" * 17_000}),
        "wrong_schema",
        "larger than 16384 bytes",
        post_id="big-meta",
    ),
    KafkaCase(
        "deeply_nested_data",
        "nesting",
        raw(_deep_json(50_000), b"deep"),
        "too_deep",
        "nested deeper than 32 levels",
    ),
    KafkaCase(
        "metadata_nested_40",
        "nesting",
        data_case("nest-40", metadata=nested(40)),
        "too_deep",
        "nested deeper than 32 levels",
        post_id="nest-40",
    ),
    KafkaCase(
        "deeply_nested_metadata",
        "nesting",
        _deep_metadata,
        "too_deep",
        "nested deeper than 32 levels",
        post_id=None,
    ),
    # ---------------------------------------------------------------- unknown account, media location
    KafkaCase(
        "unknown_account",
        "unknown account",
        data_case("ghost", account_id="acc_nobody"),
        "unknown_account",
        "'acc_nobody' is not connected",
        post_id="ghost",
    ),
    KafkaCase(
        "bucket_not_allowed",
        "allow-list",
        lambda m: as_record(
            m, envelope(video_post(m, "other-bucket", video={"uri": "s3://secret-bucket/x.mp4"}))
        ),
        "bucket_not_allowed",
        "'secret-bucket' is not in the allow-list",
        post_id="other-bucket",
    ),
    KafkaCase(
        "https_url_outside_base",
        "allow-list",
        data_case("https-uri", video={"uri": "https://media.invalid/videos/x.mp4"}),
        "wrong_schema",
        "must be an s3://bucket/key URI",
        post_id="https-uri",
    ),
    KafkaCase(
        "loopback_url",
        "allow-list",
        data_case("loopback-uri", video={"uri": "http://127.0.0.1:1/admin"}),
        "wrong_schema",
        "must be an s3://bucket/key URI",
        post_id="loopback-uri",
    ),
    KafkaCase(
        "file_url",
        "allow-list",
        data_case("file-uri", video={"uri": "file:///etc/passwd"}),
        "wrong_schema",
        "must be an s3://bucket/key URI",
        post_id="file-uri",
    ),
    KafkaCase(
        "s3_host_style_invalid",
        "allow-list",
        data_case("s3-host", video={"uri": "s3://media.invalid:443@evil.invalid/x.mp4"}),
        "wrong_schema",
        "must be an s3://bucket/key URI",
        post_id="s3-host",
    ),
    KafkaCase(
        "pull_url_outside_verified_prefix",
        "allow-list",
        lambda m: as_record(m, envelope(video_post(m, "pull-unverified", transfer="pull_from_url"))),
        "url_ownership_unverified",
        "not under a verified domain or URL prefix",
        post_id="pull-unverified",
        state="failed",
        dlq=False,
        notes="MEDIA_PUBLIC_BASE_URL is https://media.invalid/pub, which TikTok has not verified",
    ),
    KafkaCase(
        "path_traversal_key",
        "path traversal",
        lambda m: as_record(
            m, envelope(video_post(m, "traversal", video={"uri": f"s3://{m.bucket}/../../etc/passwd"}))
        ),
        "wrong_schema",
        "must not contain '.' or '..' path segments",
        post_id="traversal",
    ),
    KafkaCase(
        "path_traversal_pull_from_url",
        "path traversal",
        lambda m: as_record(
            m,
            envelope(
                video_post(
                    m,
                    "traversal-pull",
                    transfer="pull_from_url",
                    video={"uri": f"s3://{m.bucket}/v/../../secret-bucket/x.mp4"},
                )
            ),
        ),
        "wrong_schema",
        "must not contain '.' or '..' path segments",
        post_id="traversal-pull",
    ),
    KafkaCase(
        "path_traversal_encoded",
        "path traversal",
        lambda m: as_record(
            m,
            envelope(
                video_post(
                    m, "traversal-enc", video={"uri": f"s3://{m.bucket}/%2e%2e/%2e%2e/secret-bucket/x.mp4"}
                )
            ),
        ),
        "missing_object",
        "does not exist",
        post_id="traversal-enc",
    ),
    KafkaCase(
        "control_chars_in_key",
        "control characters",
        lambda m: as_record(
            m, envelope(video_post(m, "ctrl-key", video={"uri": f"s3://{m.bucket}/a\x1b[2Jb.mp4"}))
        ),
        "wrong_schema",
        "must be an s3://bucket/key URI",
        post_id="ctrl-key",
    ),
    # ---------------------------------------------------------------- the media itself
    KafkaCase(
        "garbage_file",
        "bad media",
        lambda m: as_record(m, envelope(video_post(m, "garbage", video={"uri": m.garbage}))),
        "wrong_format",
        "not an MP4, MOV or WebM",
        post_id="garbage",
    ),
    KafkaCase(
        "truncated_mp4",
        "bad media",
        lambda m: as_record(m, envelope(video_post(m, "truncated", video={"uri": m.truncated}))),
        "wrong_format",
        "impossible size",
        post_id="truncated",
    ),
    KafkaCase(
        "empty_object",
        "bad media",
        lambda m: as_record(m, envelope(video_post(m, "empty", video={"uri": m.empty}))),
        "empty_media",
        "is empty",
        post_id="empty",
    ),
    KafkaCase(
        "ftyp_without_moov",
        "bad media",
        lambda m: as_record(m, envelope(video_post(m, "no-moov", video={"uri": m.ftyp_only}))),
        "wrong_format",
        "no moov box",
        post_id="no-moov",
    ),
    KafkaCase(
        "webm_magic_then_junk",
        "bad media",
        lambda m: as_record(m, envelope(video_post(m, "ebml-junk", video={"uri": m.ebml_junk}))),
        "wrong_format",
        "WebM",
        post_id="ebml-junk",
    ),
    KafkaCase(
        "missing_object",
        "bad media",
        lambda m: as_record(
            m, envelope(video_post(m, "missing", video={"uri": f"s3://{m.bucket}/hostile/none.mp4"}))
        ),
        "missing_object",
        "does not exist",
        post_id="missing",
    ),
    KafkaCase(
        "video_longer_than_creator_limit",
        "bad media",
        lambda m: as_record(m, envelope(direct(m, "too-long", video={"uri": m.long}))),
        "duration_too_long",
        "may post at most 5 s",
        post_id="too-long",
    ),
    # ---------------------------------------------------------------- duplicates
    KafkaCase(
        "duplicate_post_id_first",
        "duplicates",
        _conflict_first,
        "wrong_format",
        "not an MP4",
        post_id="dup-conflict",
    ),
    KafkaCase(
        "duplicate_post_id_conflict",
        "duplicates",
        _conflict_second,
        "duplicate_post_id_conflict",
        "already used for a different request",
        post_id="dup-conflict",
    ),
    # ---------------------------------------------------------------- SQL, control characters, NUL
    KafkaCase(
        "sql_post_id",
        "sql",
        data_case(SQL),
        "wrong_schema",
        "data.post_id: String should match pattern",
        post_id=SQL,
    ),
    KafkaCase(
        "sql_account_id",
        "sql",
        data_case("sql-account", account_id="acc' OR '1'='1"),
        "wrong_schema",
        "data.account_id",
        post_id="sql-account",
    ),
    KafkaCase(
        "sql_key_unknown_account",
        "sql",
        lambda m: as_record(m, envelope(video_post(m, "sql-key", account_id="acc_x--")), key=SQL.encode()),
        "unknown_account",
        "is not connected",
        post_id="sql-key",
    ),
    KafkaCase(
        "newline_in_post_id",
        "control characters",
        data_case("a\nlevel=error forged"),
        "wrong_schema",
        "data.post_id: String should match pattern",
        post_id="a\nlevel=error forged",
    ),
    KafkaCase(
        "nul_in_post_id",
        "null bytes",
        data_case("nul\x00id"),
        "wrong_schema",
        "data.post_id: contains a NUL character",
        post_id="nul\x00id",
    ),
    KafkaCase(
        "nul_in_caption",
        "null bytes",
        data_case("nul-caption", caption="before\x00after"),
        "wrong_schema",
        "data.caption: contains a NUL character",
        post_id="nul-caption",
    ),
    KafkaCase(
        "nul_in_metadata_key",
        "null bytes",
        data_case("nul-meta", metadata={"k\x00": "v"}),
        "wrong_schema",
        "data.metadata",
        post_id="nul-meta",
    ),
    KafkaCase(
        "lone_surrogate_in_metadata",
        "malformed",
        data_case("surrogate-meta", metadata={"k": "\ud800"}),
        "wrong_schema",
        "data.metadata.k: contains a lone UTF-16 surrogate",
        post_id="surrogate-meta",
    ),
    KafkaCase(
        "lone_surrogate_in_post_id",
        "malformed",
        data_case("\udfff-id"),
        "wrong_schema",
        "data.post_id: contains a lone UTF-16 surrogate",
    ),
    KafkaCase(
        "lone_surrogate_in_correlation_id",
        "malformed",
        lambda m: as_record(m, envelope(video_post(m, "surrogate-corr"), correlation_id="c\ud83d")),
        "wrong_schema",
        "correlation_id: contains a lone UTF-16 surrogate",
        post_id="surrogate-corr",
    ),
    KafkaCase(
        "invalid_utf8_key", "malformed", raw(b"\x00\xff not json", b"\xff\xfe\x00"), "not_json", "not JSON"
    ),
    KafkaCase(
        "row_the_database_refuses",
        "unknown unknowns",
        data_case(POISON_POST_ID),
        "unstorable",
        "the database refuses this row",
        post_id=POISON_POST_ID,
        notes="a trigger stands for whatever Postgres may refuse that the models let through",
    ),
    # ---------------------------------------------------------------- hostile-looking but legal
    KafkaCase(
        "sql_and_control_chars_in_caption_published",
        "sql",
        lambda m: as_record(
            m,
            envelope(
                direct(
                    m,
                    "sql-caption",
                    caption=SQL + " \u202e\t\u200b" + EMOJI * 3,
                    metadata={"q": SQL, "nested": {"x": [SQL]}},
                )
            ),
        ),
        accepted=True,
        post_id="sql-caption",
        dlq=False,
        expect_caption=SQL + " \u202e\t\u200b" + EMOJI * 3,
    ),
]
