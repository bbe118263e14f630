"""Records publish_service produces carry today's `type`/`version` headers and, beside them, the
CloudEvents 1.0 Kafka binary-mode headers; a consumer written for either reads them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from uuid import UUID

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from common.events import PostStatusData, decode
from common.kafka import TOPIC_POST_STATUS
from tests.publish.harness import PARTITIONS, Harness, running_service
from tests.publish.payloads import post_request
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def test_status_records_carry_old_and_cloudevents_headers(harness: Harness, video_3s: Path) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/ok.mp4", video_3s)
    async with running_service(harness.settings()):
        await harness.request_post(post_request("hdr-ok", video.uri))
        await harness.request_post(post_request("hdr-bad", "s3://other-bucket/x.mp4"))
        await harness.wait_state("hdr-ok", "published")
        await harness.wait_state("hdr-bad", "rejected")

    topic = harness.topic(TOPIC_POST_STATUS)
    consumer = AIOKafkaConsumer(bootstrap_servers=harness.stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)

        async def all_read() -> bool:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            positions = [await consumer.position(p) for p in parts]
            return all(pos >= ends[p] for pos, p in zip(positions, parts, strict=True))

        await wait_for(all_read, timeout=30, description="the status topic read to its end")
    finally:
        await consumer.stop()

    states = {"hdr-ok": set(), "hdr-bad": set()}
    for record in records:
        headers = {name: value.decode() for name, value in record.headers}
        # Today's consumer: dispatch on `type`/`version`, decode the value.
        assert headers["type"] == "tiktok.post.status" and headers["version"] == "1"
        envelope = decode(record.value, PostStatusData, expected_type=headers["type"])
        # A CloudEvents consumer: binary mode, the value is the data (our envelope, as JSON).
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] == "tiktok.post.status"
        assert headers["ce_source"] == "/tiktok-pipeline/publish_service"
        assert UUID(headers["ce_id"]) == envelope.event_id
        assert headers["ce_time"].endswith("Z")
        assert datetime.fromisoformat(headers["ce_time"]) == envelope.occurred_at
        assert headers["content-type"] == "application/json"
        assert headers["ce_dataschema"].endswith("/tiktok.post.status.v1.json")
        states.setdefault(envelope.data.post_id, set()).add(envelope.data.state.value)
    assert "published" in states["hdr-ok"] and "rejected" in states["hdr-bad"]
