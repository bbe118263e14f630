"""Hostile input against one running pipeline (the sandbox and both services as real processes).

Every case of the corpus (``hostile_cases.py`` for Kafka records, the tables below for HTTP) gets
a clear error naming the problem: a ``rejected`` status event with its ``error.code``, the DLQ copy
with the original bytes and an ``error_code`` header, or an HTTP status with a JSON error body.
Nothing is lost (each Kafka record is accounted for), nothing crashes (both services answer
``/healthz``, no ERROR line or traceback in their logs), and the consumer goes on: a valid post
sent behind the whole corpus is published byte-exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from common.kafka import (
    TOPIC_ACCESS_TOKENS,
    TOPIC_ACCOUNTS,
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
    TOPIC_TOKEN_REFRESH_REQUESTED,
)
from common.settings import EnvReader
from common.tiktok.webhooks import sign
from tests.reliability.hostile_cases import CASES, EMOJI, POISON_POST_ID, SQL, KafkaCase, Media, envelope
from tests.waiting import wait_for
from tiktok_pipeline.local import CREATOR, LocalPipeline

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]

CREATOR_MAX_S = 5
TERMINAL = {"published", "inbox_delivered", "failed", "rejected", "cancelled"}


# ---------------------------------------------------------------------------------------- helpers


async def ffmpeg_clip(path: Path, seconds: int) -> Path:
    process = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-y",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size=360x640:rate=15:duration={seconds}",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    assert await process.wait() == 0
    return path


async def read_topics(pipeline: LocalPipeline, names: list[str]) -> list[Any]:
    """Every record now on the pipeline's topics ``names``, read to their end offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka)  # for its partitions_for (metadata)
    await producer.start()
    try:
        partitions = []
        for name in names:
            ids = await producer.partitions_for(pipeline.prefix + name)
            partitions += [TopicPartition(pipeline.prefix + name, p) for p in sorted(ids)]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.kafka,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the topics to their end"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def status_of(record: Any) -> dict[str, Any]:
    return json.loads(record.value)["data"]


@dataclass
class Sent:
    case: KafkaCase
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int

    @property
    def status_post_id(self) -> str:
        if self.case.post_id is not None:
            return self.case.post_id
        return f"unparseable:{self.case.extra.get('topic', '')}:{self.partition}:{self.offset}"


@dataclass
class Outcome:
    """What the pipeline did with one hostile record."""

    sent: Sent
    statuses: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[Any] = field(default_factory=list)


@dataclass
class Run:
    pipeline: LocalPipeline
    media: Media
    sent: dict[str, Sent]
    good_post_id: str
    good_sha256: str
    records: list[Any] = field(default_factory=list)
    http_log: list[str] = field(default_factory=list)

    def statuses(self, post_id: str) -> list[dict[str, Any]]:
        topic = self.pipeline.prefix + TOPIC_POST_STATUS
        return [status_of(r) for r in self.records if r.topic == topic and r.key == post_id.encode()]

    def dlq(self) -> list[Any]:
        return [r for r in self.records if r.topic == self.pipeline.prefix + TOPIC_POST_REQUESTED_DLQ]

    def outcome(self, case_id: str) -> Outcome:
        sent = self.sent[case_id]
        requested = self.pipeline.prefix + TOPIC_POST_REQUESTED
        out = Outcome(sent)
        for record in self.dlq():
            headers = {k: v for k, v in record.headers}
            by_source = (
                headers.get("source_topic") == requested.encode()
                and headers.get("source_partition") == str(sent.partition).encode()
                and headers.get("source_offset") == str(sent.offset).encode()
            )
            by_bytes = "source_offset" not in headers and sent.value and record.value == sent.value
            if by_source or by_bytes:
                out.dead_letters.append(record)
        out.statuses = self.statuses(sent.status_post_id)
        return out


# ---------------------------------------------------------------------------------------- the run


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pipeline(stack, tmp_path_factory):
    local = LocalPipeline(
        EnvReader({**stack.env(), "S3_BUCKET": "media"}),
        tmp_path_factory.mktemp("hostile"),
        sandbox_overrides={
            "creators": [
                {"username": CREATOR, "nickname": "Hostile", "max_video_post_duration_sec": CREATOR_MAX_S}
            ]
        },
        # Pull URLs are built under a public base TikTok has not verified for this app.
        extra_env={
            "LOG_LEVEL": "INFO",
            "MEDIA_PUBLIC_BASE_URL": "https://media.invalid/pub",
            "PUBLISH_UNKNOWN_ACCOUNT_GRACE_S": "3",
        },
    )
    try:
        await local.start()
        yield local
    finally:
        await local.stop()


async def stage_media(pipeline: LocalPipeline, account_id: str, work: Path) -> tuple[Media, Path]:
    ok = await ffmpeg_clip(work / "ok.mp4", 2)
    long = await ffmpeg_clip(work / "long.mp4", 8)
    whole = long.read_bytes()
    assert whole[4:8] == b"ftyp" and whole.find(b"moov") > len(whole) // 2, "expected moov at the end"
    run = uuid.uuid4().hex[:8]
    objects = {
        "ok": ok.read_bytes(),
        "long": whole,
        "garbage": hashlib.sha512(b"garbage").digest() * 4096,
        "truncated": whole[: len(whole) * 6 // 10],
        "empty": b"",
        "ftyp_only": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
        + b"\x00\x00\x00\x10free"
        + b"\x00" * 8,
        "ebml_junk": b"\x1a\x45\xdf\xa3" + b"\x01\xff\xfe\x00" * 64,
    }
    uris = {}
    async with pipeline.object_store() as store:
        for name, body in objects.items():
            key = f"hostile/{run}/{name}.mp4"
            await store.put_bytes(pipeline.bucket, key, body)
            uris[name] = f"s3://{pipeline.bucket}/{key}"
    return Media(account_id=account_id, bucket=pipeline.bucket, **uris), ok


REFUSE_POISON = f"""
CREATE FUNCTION publish.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.post_id = '{POISON_POST_ID}' THEN
        RAISE EXCEPTION 'the database refuses this row' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON publish.posts
    FOR EACH ROW EXECUTE FUNCTION publish.refuse_poison();
"""


async def send_at_broker_limit(
    producer: AIOKafkaProducer, topic: str, key: bytes, value: bytes
) -> tuple[bytes, bytes, Any]:
    """The largest record the broker takes (message.max.bytes), grown from the key or the value (the
    empty one): just above what the DLQ can carry with its headers."""
    size = 1_048_588 - 61 - 11 - len(key) - len(value)
    for _ in range(12):
        big_key = key or b"k" * size
        big_value = value or b'{"pad": "' + b"y" * (size - 11) + b'"}'
        try:
            return big_key, big_value, await producer.send_and_wait(topic, big_value, key=big_key)
        except MessageSizeTooLargeError:
            size -= 16
    raise AssertionError("the broker took no record near its limit")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(pipeline, tmp_path_factory) -> Run:
    account_id = await pipeline.connect_creator()
    media, ok = await stage_media(pipeline, account_id, tmp_path_factory.mktemp("media"))
    topic = pipeline.prefix + TOPIC_POST_REQUESTED
    sent: dict[str, Sent] = {}
    conn = await asyncpg.connect(pipeline.database_url)
    try:
        await conn.execute(REFUSE_POISON)
    finally:
        await conn.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.kafka, max_request_size=4 * 1024 * 1024, enable_idempotence=True
    )
    await producer.start()
    try:
        for case in CASES:
            built = case.build(media)
            meta = await producer.send_and_wait(topic, built.value, key=built.key)
            case.extra["topic"] = topic
            sent[case.id] = Sent(case, built.key, built.value, meta.partition, meta.offset)
            if case.id == "duplicate_post_id_first":  # the same request again, as a retrying upstream would
                again = case.build(media)
                await producer.send_and_wait(topic, again.value, key=again.key)
        for case_id, key, value, code, phrase in [
            ("record_at_broker_limit", account_id.encode(), b"", "too_large", "the limit is 262144"),
            ("key_at_broker_limit", b"", b"{a key at the broker limit", "not_json", "not JSON"),
        ]:
            key, value, meta = await send_at_broker_limit(producer, topic, key, value)
            limit_case = KafkaCase(
                case_id, "huge fields", CASES[0].build, code, phrase, extra={"topic": topic}
            )
            sent[case_id] = Sent(limit_case, key, value, meta.partition, meta.offset)
        # The topics other services write: a broken or hostile producer must not stop their readers.
        deep = b'{"type": "x", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        nul_account = {"account_id": "acc\x00", "open_id": "o", "status": "connected"}
        for name, value in [
            (TOPIC_ACCOUNTS, deep),
            (TOPIC_ACCOUNTS, json.dumps(envelope(nul_account, type="tiktok.account.connected")).encode()),
            (TOPIC_ACCESS_TOKENS, b"{not json"),
            (TOPIC_TOKEN_REFRESH_REQUESTED, deep),
            (
                TOPIC_TOKEN_REFRESH_REQUESTED,
                json.dumps(envelope({"account_id": "a\x00", "reason": "x"})).encode(),
            ),
        ]:
            await producer.send_and_wait(pipeline.prefix + name, value, key=b"hostile-state")
        # Behind all of them, on the account's partition: a valid post.
        good = f"good-{uuid.uuid4().hex[:8]}"
        data = {
            "post_id": good,
            "account_id": account_id,
            "kind": "video",
            "mode": "direct",
            "privacy_level": "SELF_ONLY",
            "video": {"uri": media.ok},
            "caption": "after the storm",
        }
        await producer.send_and_wait(topic, json.dumps(envelope(data)).encode(), key=account_id.encode())
    finally:
        await producer.stop()
    result = Run(pipeline, media, sent, good, hashlib.sha256(ok.read_bytes()).hexdigest())

    async def all_accounted_for() -> bool:
        result.records = await read_topics(pipeline, [TOPIC_POST_STATUS, TOPIC_POST_REQUESTED_DLQ])
        good_states = {s["state"] for s in result.statuses(good)}
        if not good_states & TERMINAL:
            return False
        for case_id, one in result.sent.items():
            out = result.outcome(case_id)
            if one.case.accepted:
                if not {s["state"] for s in out.statuses} & TERMINAL:
                    return False
            elif (one.case.dlq and not out.dead_letters) or not any(
                (s.get("error") or {}).get("code") == one.case.code for s in out.statuses
            ):
                return False
        return True

    try:
        await wait_for(
            all_accounted_for, timeout=150, interval=1.0, description="every hostile record's outcome"
        )
    except AssertionError as exc:
        print(f"not every hostile record was accounted for: {exc}")  # each case's test says which
    return result


# ---------------------------------------------------------------------------------------- Kafka cases


@pytest.mark.parametrize("case", [*(c.id for c in CASES), "record_at_broker_limit", "key_at_broker_limit"])
async def test_hostile_record_is_answered_clearly(run: Run, case: str) -> None:
    out = run.outcome(case)
    case = out.sent.case
    states = [(s["state"], (s.get("error") or {}).get("code")) for s in out.statuses]
    if case.accepted:
        assert ("published", None) in states, states
        assert not out.dead_letters
        posts = await sandbox_posts(run.pipeline)
        captions = [p["post_info"].get("title") for p in posts]
        assert case.expect_caption in captions, captions
        published = next(s for s in out.statuses if s["state"] == "published")
        assert published["metadata"] == {"q": SQL, "nested": {"x": [SQL]}}
        return
    rejected = [s for s in out.statuses if s["state"] == case.state and s["error"]["code"] == case.code]
    assert rejected, (
        f"no {case.state} status with code {case.code!r} for {out.sent.status_post_id!r}: {states}"
    )
    message = rejected[0]["error"]["message"]
    assert case.phrase.lower() in message.lower(), message
    if not case.dlq:  # failed at TikTok after it was accepted: a status, no dead letter
        assert not out.dead_letters
        return
    assert out.dead_letters, "no dead letter"
    letter = next(r for r in out.dead_letters if dict(r.headers)["error_code"] == case.code.encode())
    headers = dict(letter.headers)
    assert case.phrase.lower().encode() in headers["error_message"].lower()
    assert all(len(s["account_id"]) <= 128 for s in rejected), "an account id salvaged without a bound"
    if case.id in ("record_at_broker_limit", "key_at_broker_limit"):
        # Too big to copy with our headers: the letter points at the original instead.
        assert letter.value is None and len(letter.key or b"") <= 512 * 1024
        assert headers["original_size"] == str(len(out.sent.value or b"")).encode()
        assert b"too large to copy" in headers["error_message"]
        return
    assert letter.value == out.sent.value, "the DLQ copy is not the original bytes"
    assert letter.key == (out.sent.key or b"")


async def test_a_valid_post_behind_the_corpus_is_published_byte_exact(run: Run) -> None:
    states = [s["state"] for s in run.statuses(run.good_post_id)]
    assert states[-1] == "published", states
    posts = [p for p in await sandbox_posts(run.pipeline) if p["post_info"].get("title") == "after the storm"]
    assert len(posts) == 1 and posts[0]["sha256"] == run.good_sha256
    assert posts[0]["status"] == "PUBLISH_COMPLETE"


async def test_a_repeated_identical_request_is_a_no_op(run: Run) -> None:
    """The first request of ``dup-conflict`` came twice (a new event_id, the same data): one post, one
    ``received``; only the conflicting third is rejected as a duplicate, and nothing else is dead-lettered."""
    first = run.statuses("dup-conflict")
    codes = [(s["state"], (s.get("error") or {}).get("code")) for s in first]
    assert codes.count(("received", None)) == 1, codes
    assert codes.count(("rejected", "duplicate_post_id_conflict")) == 1, codes
    assert ("rejected", "wrong_format") in codes
    letters = [r for r in run.dlq() if b'"dup-conflict"' in (r.value or b"")]
    assert sorted(dict(r.headers)["error_code"] for r in letters) == [
        b"duplicate_post_id_conflict",
        b"wrong_format",
    ]


async def sandbox_posts(pipeline: LocalPipeline) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{pipeline.sandbox_url}/_sandbox/posts") as r:
        return await r.json()


# ---------------------------------------------------------------------------------------- HTTP cases


@dataclass(frozen=True)
class HttpCase:
    id: str
    service: str  # publish | auth
    method: str
    path: str
    status: int
    code: str
    phrase: str = ""
    body: bytes | None = None
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = True
    sign_webhook: bool = False


def _post(post_id: str = "http-1", **fields: Any) -> dict[str, Any]:
    return {
        "post_id": post_id,
        "account_id": "acc_http",
        "kind": "video",
        "mode": "draft",
        "video": {"uri": "s3://media/x.mp4"},
        **fields,
    }


def _deep_body(depth: int) -> bytes:
    return b'{"post_id": "deep", "metadata": ' + b"[" * depth + b"]" * depth + b"}"


HTTP_CASES = [
    HttpCase(
        "posts_without_api_key",
        "publish",
        "POST",
        "/v1/posts",
        401,
        "unauthorized",
        "bearer API key",
        json_body=_post(),
        auth=False,
    ),
    HttpCase(
        "posts_wrong_api_key",
        "publish",
        "POST",
        "/v1/posts",
        401,
        "unauthorized",
        "bearer API key",
        json_body=_post(),
        auth=False,
        headers={"Authorization": "Bearer ' OR 1=1 --"},
    ),
    HttpCase(
        "posts_not_json", "publish", "POST", "/v1/posts", 400, "invalid_input", "not JSON", body=b"{nope"
    ),
    HttpCase(
        "posts_invalid_utf8",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "not JSON",
        body=b'{"post_id": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    ),
    HttpCase(
        "posts_bogus_charset",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "post_id: Field required",
        body=b"{}",
        headers={"Content-Type": "application/json; charset=x-hostile"},
    ),
    HttpCase(
        "posts_integer_of_5000_digits",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "not JSON",
        body=b'{"post_id": "big", "cover_index": ' + b"9" * 5000 + b"}",
    ),
    HttpCase(
        "webhook_signed_integer_of_5000_digits",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "not JSON",
        auth=False,
        sign_webhook=True,
        body=b'{"event": "x", "create_time": ' + b"7" * 5000 + b', "content": "{}"}',
    ),
    HttpCase(
        "posts_lone_surrogate",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "wrong_schema",
        "metadata.note: contains a lone UTF-16 surrogate",
        json_body=_post(metadata={"note": "\udc00"}),
    ),
    HttpCase(
        "posts_json_array",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "must be a JSON object",
        json_body=[_post()],
    ),
    HttpCase(
        "posts_5mb_caption",
        "publish",
        "POST",
        "/v1/posts",
        413,
        "payload_too_large",
        "larger than",
        json_body=_post(caption="c" * 5 * 1024 * 1024),
    ),
    HttpCase(
        "posts_deeply_nested",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "too_deep",
        "nested deeper than",
        body=_deep_body(100_000),
    ),
    HttpCase(
        "posts_nested_metadata_40",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "too_deep",
        "nested deeper than",
        body=_deep_body(40),
    ),
    HttpCase(
        "posts_nul_caption",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "wrong_schema",
        "caption: contains a NUL character",
        json_body=_post(caption="a\x00b"),
    ),
    HttpCase(
        "posts_sql_post_id",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "post_id",
        json_body=_post(post_id=SQL),
    ),
    HttpCase(
        "posts_emoji_caption_too_long",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "2202 UTF-16 code units",
        json_body=_post(caption=EMOJI * 1101),
    ),
    HttpCase(
        "posts_media_url_outside",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "must be an s3://bucket/key URI",
        json_body=_post(video={"uri": "https://cdn.invalid/a.mp4"}),
    ),
    HttpCase(
        "posts_unknown_field",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_input",
        "Extra inputs are not permitted",
        json_body=_post(owner="admin"),
    ),
    HttpCase(
        "posts_long_correlation_id",
        "publish",
        "POST",
        "/v1/posts",
        400,
        "invalid_correlation_id",
        "1 to 200 visible ASCII characters",
        json_body=_post(),
        headers={"X-Correlation-Id": "c" * 300},
    ),
    HttpCase(
        "callback_long_correlation_id",
        "auth",
        "GET",
        "/v1/oauth/callback?code=x&state=y",
        400,
        "invalid_correlation_id",
        "1 to 200 visible ASCII characters",
        headers={"X-Correlation-Id": "c" * 300},
    ),
    HttpCase(
        "delete_account_long_correlation_id",
        "auth",
        "DELETE",
        "/v1/accounts/acc_nobody",
        400,
        "invalid_correlation_id",
        "1 to 200 visible ASCII characters",
        headers={"X-Correlation-Id": "c" * 300},
    ),
    HttpCase("get_post_unknown", "publish", "GET", "/v1/posts/nope", 404, "not_found", "no post 'nope'"),
    HttpCase(
        "get_post_sql",
        "publish",
        "GET",
        "/v1/posts/%27%3B%20DROP%20TABLE%20posts%3B--",
        404,
        "not_found",
        "DROP TABLE",
    ),
    HttpCase("get_post_nul", "publish", "GET", "/v1/posts/a%00b", 404, "not_found", "no post"),
    HttpCase("cancel_post_nul", "publish", "POST", "/v1/posts/a%00b/cancel", 404, "not_found", "no post"),
    HttpCase(
        "get_post_traversal",
        "publish",
        "GET",
        "/v1/posts/..%2F..%2Fetc%2Fpasswd",
        404,
        "not_found",
        "no post",
    ),
    # TikTok webhooks
    HttpCase(
        "webhook_unsigned",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "header is missing",
        json_body={"event": "post.publish.complete"},
        auth=False,
    ),
    HttpCase(
        "webhook_garbage_signature",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "needs t= and s=",
        json_body={"event": "x"},
        headers={"TikTok-Signature": "garbage"},
        auth=False,
    ),
    HttpCase(
        "webhook_forged_signature",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "does not match",
        json_body={"event": "x"},
        auth=False,
        headers={"TikTok-Signature": sign(b'{"event": "x"}', "not-the-secret", int(time.time()))},
    ),
    HttpCase(
        "webhook_timestamp_not_a_number",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        401,
        "unauthorized",
        "timestamp is not a number",
        json_body={},
        headers={"TikTok-Signature": "t=abc,s=00"},
        auth=False,
    ),
    HttpCase(
        "webhook_oversized_body",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        413,
        "payload_too_large",
        "larger than",
        body=b'{"event": "' + b"x" * 2 * 1024 * 1024 + b'"}',
        auth=False,
    ),
    HttpCase(
        "webhook_signed_not_json",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "not JSON",
        body=b"\xff{not json",
        auth=False,
        sign_webhook=True,
    ),
    HttpCase(
        "webhook_signed_bad_create_time",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "create_time",
        auth=False,
        sign_webhook=True,
        json_body={"event": "post.publish.complete", "create_time": "yesterday", "content": "{}"},
    ),
    HttpCase(
        "webhook_signed_infinite_create_time",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "create_time",
        auth=False,
        sign_webhook=True,
        body=b'{"event": "post.publish.complete", "create_time": 1e999, "content": "{}"}',
    ),
    HttpCase(
        "webhook_signed_nul_publish_id",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "wrong_schema",
        "NUL character",
        auth=False,
        sign_webhook=True,
        json_body={
            "event": "post.publish.complete",
            "create_time": 1,
            "content": json.dumps({"publish_id": "v_pub\x00"}),
        },
    ),
    HttpCase(
        "webhook_signed_deep",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "too_deep",
        "nested deeper than",
        auth=False,
        sign_webhook=True,
        body=b'{"content": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ),
    HttpCase(
        "webhook_signed_content_not_object",
        "publish",
        "POST",
        "/v1/webhooks/tiktok",
        400,
        "invalid_input",
        "no content object",
        auth=False,
        sign_webhook=True,
        json_body={"event": "x", "content": "[1]"},
    ),
    # auth_service management API and OAuth callback
    HttpCase(
        "accounts_without_api_key",
        "auth",
        "GET",
        "/v1/accounts",
        401,
        "unauthorized",
        "bearer API key",
        auth=False,
    ),
    HttpCase(
        "accounts_bad_limit",
        "auth",
        "GET",
        "/v1/accounts?limit=1;DROP",
        400,
        "invalid_input",
        "limit must be an integer",
    ),
    HttpCase(
        "accounts_bad_status",
        "auth",
        "GET",
        "/v1/accounts?status=%27%20OR%201%3D1",
        400,
        "invalid_input",
        "status must be one of",
    ),
    HttpCase(
        "accounts_nul_after", "auth", "GET", "/v1/accounts?after=a%00", 400, "invalid_input", "NUL character"
    ),
    HttpCase(
        "account_sql_id",
        "auth",
        "GET",
        "/v1/accounts/%27%20OR%20%271%27%3D%271",
        404,
        "account_not_found",
        "no account \"' OR '1'='1\"",
    ),
    HttpCase("account_nul_id", "auth", "GET", "/v1/accounts/acc%00x", 404, "account_not_found", "no account"),
    HttpCase(
        "account_nul_token_status",
        "auth",
        "GET",
        "/v1/accounts/acc%00x/token-status",
        404,
        "account_not_found",
        "no account",
    ),
    HttpCase(
        "delete_account_nul", "auth", "DELETE", "/v1/accounts/acc%00x", 404, "account_not_found", "no account"
    ),
    HttpCase(
        "delete_account_unknown",
        "auth",
        "DELETE",
        "/v1/accounts/acc_nobody",
        404,
        "account_not_found",
        "no account 'acc_nobody'",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(run: Run):
    """One client for the HTTP cases; the corpus run comes first so both share the pipeline's time."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
async def test_hostile_http_request_gets_a_clear_json_error(run: Run, http, case: HttpCase) -> None:
    p = run.pipeline
    base = p.publish_url if case.service == "publish" else p.auth_url
    headers = dict(case.headers)
    if case.auth:
        headers["Authorization"] = f"Bearer {p.api_key}"
    body = (
        case.body
        if case.body is not None
        else (json.dumps(case.json_body).encode() if case.json_body is not None else None)
    )
    if case.sign_webhook:
        headers["TikTok-Signature"] = sign(body or b"", p.client_secret, int(time.time()))
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    data = io.BytesIO(body) if body is not None and len(body) > 64 * 1024 else body  # big: streamed
    async with http.request(case.method, base + case.path, data=data, headers=headers) as r:
        text = await r.text(errors="replace")
        assert r.status == case.status, text[:500]
        assert r.content_type == "application/json", text[:500]
        error = json.loads(text)["error"]
    assert error["code"] == case.code, error
    assert case.phrase.lower() in error["message"].lower(), error


async def test_a_replayed_webhook_is_recognised(run: Run, http) -> None:
    p = run.pipeline
    body = json.dumps(
        {
            "event": "post.publish.complete",
            "user_openid": "x",
            "create_time": int(time.time()),
            "content": json.dumps({"publish_id": f"v_pub_file~v2-1.{uuid.uuid4().int % 10**9}"}),
        }
    ).encode()
    signature = sign(body, p.client_secret, int(time.time()))
    outcomes = []
    for _ in range(2):
        async with http.post(
            f"{p.publish_url}/v1/webhooks/tiktok", data=body, headers={"TikTok-Signature": signature}
        ) as r:
            assert r.status == 200
            outcomes.append((await r.json())["outcome"])
    assert outcomes == ["unknown_post", "duplicate"]


async def test_a_stale_webhook_signature_is_refused(run: Run, http) -> None:
    p = run.pipeline
    body = b'{"event": "post.publish.complete", "content": "{}"}'
    signature = sign(body, p.client_secret, int(time.time()) - 3600)  # a valid MAC, an hour old
    async with http.post(
        f"{p.publish_url}/v1/webhooks/tiktok", data=body, headers={"TikTok-Signature": signature}
    ) as r:
        assert r.status == 401
        assert "outside the tolerance" in (await r.json())["error"]["message"]


async def _authorize(p: LocalPipeline, session: aiohttp.ClientSession) -> str:
    """Start a connect in ``session`` and click Authorize; return the callback URL (with code and state)."""
    import re
    from urllib.parse import urljoin

    async with session.get(f"{p.auth_url}/v1/connect", allow_redirects=False) as r:
        authorize = r.headers["Location"]
    async with session.get(authorize, allow_redirects=False) as r:
        page = await r.text()
    request_id = re.search(r'name="request_id" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    scopes = re.findall(r'name="scope" value="([^"]+)" checked', page)
    form = aiohttp.FormData(
        [("request_id", request_id), ("creator", CREATOR), ("decision", "authorize")]
        + [("scope", s) for s in scopes]
    )
    async with session.post(urljoin(authorize, "/v2/auth/authorize/"), data=form, allow_redirects=False) as r:
        return r.headers["Location"]


async def test_oauth_state_replay_and_foreign_browser_are_refused(run: Run) -> None:
    p = run.pipeline
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        callback = await _authorize(p, browser)
        async with browser.get(callback, allow_redirects=False) as r:
            assert r.status == 302 and "account_id=" in r.headers["Location"]
        # The same callback again (a replayed state): refused, and it names why.
        async with browser.get(callback, allow_redirects=False) as r:
            replay_status, replay_page = r.status, await r.text()
        second = await _authorize(p, browser)
    assert replay_status == 400 and "state" in replay_page.lower(), replay_page[:400]
    # A fresh state's callback opened by another browser (no cookie): refused, the code unused.
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with other, other.get(second, allow_redirects=False) as r:
        assert r.status == 400, await r.text()
        assert "browser" in (await r.text()).lower()
    # A forged state: refused.
    async with aiohttp.ClientSession() as forger:
        url = f"{p.auth_url}/v1/oauth/callback?code=forged&state={'A' * 43}"
        async with forger.get(url, allow_redirects=False) as r:
            assert r.status == 400 and "state" in (await r.text()).lower()


# ---------------------------------------------------------------------------------------- nothing crashed


async def test_services_are_healthy_and_logged_no_crash(run: Run, http) -> None:
    p = run.pipeline
    for base in (p.auth_url, p.publish_url, p.sandbox_url):
        path = "/_sandbox/health" if base == p.sandbox_url else "/healthz"
        async with http.get(base + path) as r:
            assert r.status == 200
    for service in ("auth_service", "publish_service"):
        assert p.service(service).process.returncode is None, f"{service} exited"
    crashes = []
    for log in sorted(p.work.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"line": line}
            level = str(entry.get("level", "")).lower() if isinstance(entry, dict) else ""
            if level in ("error", "critical") or "Traceback" in line or '"exception"' in line:
                crashes.append(f"{log.name}: {line[:400]}")
    assert not crashes, "\n".join(crashes[:20])


async def test_hostile_records_on_the_state_topics_are_skipped_and_named(run: Run, http) -> None:
    p = run.pipeline
    for base in (p.auth_url, p.publish_url):
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200, await r.text()
    publish_log = (p.work / "publish_service.log").read_text(errors="replace")
    auth_log = (p.work / "auth_service.log").read_text(errors="replace")
    skipped = [json.loads(line) for line in publish_log.splitlines() if '"state_event_bad"' in line]
    assert {e["error_code"] for e in skipped} == {"too_deep", "wrong_schema", "not_json"}, skipped
    invalid = [json.loads(line) for line in auth_log.splitlines() if '"refresh_request_invalid"' in line]
    assert {e["error_code"] for e in invalid} == {"too_deep", "wrong_schema"}, invalid


async def test_rejections_are_logged_with_their_code(run: Run) -> None:
    log = (run.pipeline.work / "publish_service.log").read_text(errors="replace")
    for code in (
        "not_json",
        "too_deep",
        "wrong_schema",
        "too_large",
        "wrong_format",
        "duration_too_long",
    ):
        assert f'"error_code": "{code}"' in log, f"no log line names {code}"


async def test_corpus_is_large_and_varied() -> None:
    ids = (
        [c.id for c in CASES] + ["record_at_broker_limit", "key_at_broker_limit"] + [c.id for c in HTTP_CASES]
    )
    assert len(ids) == len(set(ids)) and len(ids) >= 50
    assert len({c.category for c in CASES}) >= 10
