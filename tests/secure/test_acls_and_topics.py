"""On the secured cluster: the ACL table holds, and create-topics changes only what it owns."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiokafka.errors as ak_errors
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from common.kafka import DAY_MS, TOPIC_POST_REQUESTED, describe_topic_config, standard_topics
from common.kafka_provision import _incremental_set
from tests.secure.conftest import ROOT, SecureKafka

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@asynccontextmanager
async def admin_client(secure: SecureKafka) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=secure.bootstrap, **secure.security("admin").client_kwargs()
    )
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def write_as(secure: SecureKafka, user: str | None, topic: str, *, idempotent: bool = True) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap,
        enable_idempotence=idempotent,
        acks="all",
        request_timeout_ms=10_000,
        **secure.security(user).client_kwargs(),
    )
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"forged", key=b"acct-1")
    finally:
        await producer.stop()


async def test_each_user_can_do_only_what_the_acl_table_allows(secure_kafka: SecureKafka) -> None:
    # The upstream producers' user writes a post request (the control: the cluster works).
    await write_as(secure_kafka, "upstream", "tiktok.post.requested")

    # The dashboard's user: its idempotent producer is refused its producer id (it may write nowhere),
    # and a plain producer is refused the topic itself.
    with pytest.raises(ak_errors.ClusterAuthorizationFailedError) as refused:
        await write_as(secure_kafka, "dashboard", "tiktok.post.requested")
    print(f"\ndashboard (idempotent) -> tiktok.post.requested: {refused.value!r}")
    with pytest.raises(ak_errors.TopicAuthorizationFailedError) as refused_topic:
        await write_as(secure_kafka, "dashboard", "tiktok.post.requested", idempotent=False)
    print(f"dashboard -> tiktok.post.requested: {refused_topic.value!r}")
    assert "tiktok.post.requested" in str(refused_topic.value)

    # No credentials (TLS only, no SASL): the SASL_SSL listener refuses any request before a SASL
    # handshake and closes the connection; the broker says so in its log.
    refusal = "during SASL handshake"
    before = broker_log_lines(secure_kafka, refusal)
    with pytest.raises(ak_errors.KafkaConnectionError) as anonymous:
        await write_as(secure_kafka, None, "tiktok.post.requested")
    print(f"no credentials -> tiktok.post.requested: {anonymous.value!r}")
    after = broker_log_lines(secure_kafka, refusal)
    assert len(after) > len(before)
    print(f"  broker: {after[-1]}")

    # publish_service may not forge an account event.
    with pytest.raises(ak_errors.TopicAuthorizationFailedError) as forged:
        await write_as(secure_kafka, "publish-service", "tiktok.accounts")
    print(f"publish-service -> tiktok.accounts: {forged.value!r}")

    # auth_service may not read the post requests.
    consumer = AIOKafkaConsumer(
        "tiktok.post.requested",
        bootstrap_servers=secure_kafka.bootstrap,
        group_id="auth-service",
        **secure_kafka.security("auth-service").client_kwargs(),
    )
    try:
        with pytest.raises(ak_errors.TopicAuthorizationFailedError) as unread:
            await consumer.start()
            await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 30)
    finally:
        await consumer.stop()
    print(f"auth-service reads tiktok.post.requested: {unread.value!r}")

    # And what they may do, they can: publish_service writes status, auth_service writes accounts.
    await write_as(secure_kafka, "publish-service", "tiktok.post.status")
    await write_as(secure_kafka, "auth-service", "tiktok.accounts")


def broker_log_lines(secure: SecureKafka, text: str) -> list[str]:
    return [
        line.strip()
        for log in sorted(secure.directory.glob("node-*/kafka.log"))
        for line in log.read_text(errors="replace").splitlines()
        if text in line
    ]


def create_topics(secure: SecureKafka, prefix: str) -> str:
    env = {**os.environ, **secure.env("admin"), "TOPIC_PREFIX": prefix}
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_pipeline.cli", "create-topics", "--partitions", "3",
         "--replication-factor", "3", "--min-insync-replicas", "2"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_create_topics_twice_changes_only_what_it_owns(secure_kafka: SecureKafka) -> None:
    prefix = f"ct{uuid.uuid4().hex[:8]}."
    requested = prefix + TOPIC_POST_REQUESTED
    owned = len(standard_topics())
    first = create_topics(secure_kafka, prefix)
    assert first.count(": created") == owned, first
    async with admin_client(secure_kafka) as admin:
        try:
            (described,) = await admin.describe_topics([requested])
            assert {len(p["replicas"]) for p in described["partitions"]} == {3}
            config = await describe_topic_config(admin, requested)
            assert config["min.insync.replicas"] == "2"
            assert config["retention.ms"] == str(7 * DAY_MS)

            # An operator sets a key of their own, and someone drifts one we own.
            await _incremental_set(
                admin, requested, {"max.message.bytes": "2000000", "retention.ms": "60000"}
            )
            second = create_topics(secure_kafka, prefix)
            assert f"{requested}: updated" in second, second
            assert second.count(": unchanged") == owned - 1, second

            config = await describe_topic_config(admin, requested)
            assert config["max.message.bytes"] == "2000000"  # the operator's setting survived
            assert config["retention.ms"] == str(7 * DAY_MS)  # ours is back
            assert config["min.insync.replicas"] == "2"
            assert create_topics(secure_kafka, prefix).count(": unchanged") == owned
        finally:
            topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
            await admin.delete_topics(topics)
