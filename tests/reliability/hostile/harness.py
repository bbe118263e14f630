"""What the hostile-input tests share: sending the corpus through one running pipeline, reading
back what the pipeline made of each record, and sending one HTTP case.

The pipeline (``conftest.py``) is the sandbox and both services as real processes. :func:`send_corpus`
puts every Kafka case of ``kafka_cases.py`` on ``tiktok.post.requested`` (plus two records at the
broker's size limit, hostile records on the state topics the services read, and, behind all of them,
one valid post), then waits until every record's outcome is on the status topic or the DLQ.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from common.kafka import (
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
)
from common.tiktok.webhooks import sign
from tests.reliability.hostile.http_cases import HttpCase
from tests.reliability.hostile.kafka_cases import CASES, POISON_POST_ID, KafkaCase, Media, envelope
from tests.reliability.hostile.state_cases import STATE_CASES
from tests.waiting import wait_for
from tiktok_pipeline.local import CREATOR, LocalPipeline

CREATOR_MAX_S = 5
TERMINAL = {"published", "inbox_delivered", "failed", "rejected", "cancelled"}
BROKER_LIMIT_CASE_IDS = ["record_at_broker_limit", "key_at_broker_limit"]
"""Built while sending (their size depends on the broker), so not in ``CASES``."""
KAFKA_CASE_IDS = [c.id for c in CASES] + BROKER_LIMIT_CASE_IDS
GOOD_CAPTION = "after the storm"
MARKS = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="package"),  # the package's one pipeline lives in this loop
    pytest.mark.timeout(300),
]
"""Every test module of the package: ``pytestmark = MARKS``."""


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
    state_sent: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Each state case's (partition, offset)."""
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


# ---------------------------------------------------------------------------------------- sending


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


async def send_corpus(pipeline: LocalPipeline, work: Path) -> Run:
    """Send every hostile record and one valid post behind them; return once each is accounted for
    (or after 150 s: then each case's own test says which one is missing)."""
    account_id = await pipeline.connect_creator()
    media, ok = await stage_media(pipeline, account_id, work)
    topic = pipeline.prefix + TOPIC_POST_REQUESTED
    sent: dict[str, Sent] = {}
    state_sent: dict[str, tuple[int, int]] = {}
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
        for state_case in STATE_CASES:
            value = state_case.build(state_case.key, pipeline.transport_keys)
            meta = await producer.send_and_wait(
                pipeline.prefix + state_case.topic, value, key=state_case.key.encode()
            )
            state_sent[state_case.id] = (meta.partition, meta.offset)
        # Behind all of them, on the account's partition: a valid post.
        good = f"good-{uuid.uuid4().hex[:8]}"
        data = {
            "post_id": good,
            "account_id": account_id,
            "kind": "video",
            "mode": "direct",
            "privacy_level": "SELF_ONLY",
            "video": {"uri": media.ok},
            "caption": GOOD_CAPTION,
        }
        await producer.send_and_wait(topic, json.dumps(envelope(data)).encode(), key=account_id.encode())
    finally:
        await producer.stop()
    result = Run(pipeline, media, sent, good, hashlib.sha256(ok.read_bytes()).hexdigest(), state_sent)

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


async def sandbox_posts(pipeline: LocalPipeline) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{pipeline.sandbox_url}/_sandbox/posts") as r:
        return await r.json()


def log_text(pipeline: LocalPipeline, service: str) -> str:
    return (pipeline.work / f"{service}.log").read_text(errors="replace")


# ---------------------------------------------------------------------------------------- HTTP


async def send_http_case(
    http: aiohttp.ClientSession, p: LocalPipeline, case: HttpCase
) -> tuple[int, str, str]:
    """Send ``case`` as written (API key, webhook signature and content type added where it says);
    return the answer's status, content type and text."""
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
    if case.signature is not None:
        headers["TikTok-Signature"] = case.signature(body or b"", p.client_secret, int(time.time()))
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    data = io.BytesIO(body) if body is not None and len(body) > 64 * 1024 else body  # big: streamed
    async with http.request(case.method, base + case.path, data=data, headers=headers) as r:
        return r.status, r.content_type, await r.text(errors="replace")


async def authorize(p: LocalPipeline, session: aiohttp.ClientSession) -> str:
    """Start a connect in ``session`` and click Authorize; return the callback URL (with code and state)."""
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
