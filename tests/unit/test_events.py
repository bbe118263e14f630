import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from common import events
from common.event_fields import MAX_JSON_DEPTH
from common.events import (
    BadEvent,
    EventType,
    PostRequestedData,
    PostStatusData,
    decode,
    encode,
    json_schemas,
    utf16_len,
)

ROOT = Path(__file__).resolve().parents[2]


def request(**overrides):
    data = {
        "post_id": "p-1",
        "account_id": "acc-1",
        "kind": "video",
        "mode": "direct",
        "video": {"uri": "s3://media/v.mp4"},
        "privacy_level": "SELF_ONLY",
    }
    data.update(overrides)
    return {
        "type": "tiktok.post.requested",
        "version": 1,
        "event_id": "6d2c0c3e-0a43-4f5e-9d0e-1b1d6c1e8f00",
        "occurred_at": "2026-11-22T10:00:00Z",
        "data": data,
    }


def test_round_trip_keeps_correlation_and_headers():
    data = PostRequestedData.model_validate(request()["data"])
    value, headers = encode(EventType.post_requested, data, correlation_id="corr-9")
    envelope = decode(value, PostRequestedData, expected_type="tiktok.post.requested")
    assert envelope.data == data and envelope.correlation_id == "corr-9"
    # Today's headers, unchanged, and CloudEvents 1.0 Kafka binary mode beside them.
    assert headers[:2] == [("type", b"tiktok.post.requested"), ("version", b"1")]
    assert dict(headers) == {
        "type": b"tiktok.post.requested",
        "version": b"1",
        "ce_specversion": b"1.0",
        "ce_id": str(envelope.event_id).encode(),
        "ce_type": b"tiktok.post.requested",
        "ce_source": b"/tiktok-pipeline/producer",
        "ce_time": envelope.occurred_at.isoformat().replace("+00:00", "Z").encode(),
        "ce_dataschema": b"https://github.com/tiktok-pipeline/schemas/tiktok.post.requested.v1.json",
        "content-type": b"application/json",
    }


def test_cloudevents_time_is_the_events_instant_in_utc():
    when = datetime(2026, 11, 22, 11, 30, 0, 250000, tzinfo=timezone(timedelta(hours=1)))
    data = PostRequestedData.model_validate(request()["data"])
    _, headers = encode(EventType.post_requested, data, occurred_at=when, source="/upstream/crm")
    assert dict(headers)["ce_time"] == b"2026-11-22T10:30:00.250000Z"
    assert dict(headers)["ce_source"] == b"/upstream/crm"
    status = PostStatusData(post_id="p", account_id="a", seq=0, state="received")
    _, headers = encode(EventType.post_status, status)
    assert dict(headers)["ce_source"] == b"/tiktok-pipeline/publish_service"


def test_caption_is_counted_in_utf16_units():
    assert utf16_len("😀") == 2
    decode(json.dumps(request(caption="😀" * 1100)).encode(), PostRequestedData)
    with pytest.raises(BadEvent) as info:
        decode(json.dumps(request(caption="😀" * 1100 + "a")).encode(), PostRequestedData)
    assert info.value.code == "wrong_schema" and "data.caption" in info.value.message
    assert "2201 UTF-16 code units" in info.value.message


@pytest.mark.parametrize(
    ("raw", "code", "needle"),
    [
        (b"not json", "not_json", "not JSON"),
        (b"[]", "wrong_schema", "not an object"),
        (b"x" * 300_000, "too_large", "limit"),
        (json.dumps(request(privacy_level=None)).encode(), "wrong_schema", "privacy_level"),
        (json.dumps(request(video={"uri": "https://evil.invalid/x"})).encode(), "wrong_schema", "s3://"),
        (json.dumps(request(kind="photo")).encode(), "wrong_schema", "photo"),
        (json.dumps(request(surprise=1)).encode(), "wrong_schema", "surprise"),
        (json.dumps({**request(), "version": 2}).encode(), "unsupported_version", "version 2"),
        (json.dumps(request(publish_at="2026-11-22T10:00:00")).encode(), "wrong_schema", "timezone"),
    ],
)
def test_bad_records_name_the_problem(raw, code, needle):
    with pytest.raises(BadEvent) as info:
        decode(raw, PostRequestedData, expected_type="tiktok.post.requested")
    assert info.value.code == code
    assert needle in info.value.message


def test_photo_rules():
    photos = [{"uri": f"s3://media/{i}.jpg"} for i in range(3)]
    base = {"kind": "photo", "video": None, "photos": photos, "transfer": "pull_from_url", "title": "t"}
    decode(json.dumps(request(**base, cover_index=2)).encode(), PostRequestedData)
    with pytest.raises(BadEvent, match="cover_index 3"):
        decode(json.dumps(request(**base, cover_index=3)).encode(), PostRequestedData)
    with pytest.raises(BadEvent, match="pull_from_url"):
        decode(
            json.dumps(request(**{**base, "transfer": "file_upload"}, cover_index=0)).encode(),
            PostRequestedData,
        )


def test_checked_in_schemas_match_the_models():
    for name, schema in json_schemas().items():
        path = ROOT / "schemas" / name
        assert path.exists(), f"{name} missing: run python -m common.events"
        assert json.loads(path.read_text()) == schema, f"{name} drifted: run python -m common.events"


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", range(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 3))
@pytest.mark.parametrize("leaf", [1, "x", "a\x00", "\ud800", [], {}, None, [1], {"a": 1}, {"\x00": 1}])
def test_the_fast_shape_check_passes_only_what_the_exact_one_passes(
    depth: int, leaf: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = _nested(depth, leaf)
    fast = events._shape_is_fine(value)
    monkeypatch.setattr(events, "_shape_is_fine", lambda _raw: False)  # the exact, path-naming check
    exact = events._shape_problem(value)
    assert fast == (exact is None), (depth, leaf, exact)
