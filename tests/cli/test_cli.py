"""Every `tiktok-pipeline` command, run as an operator runs it, against the real stack.

One pipeline (sandbox + auth_service + publish_service as real processes) serves the module; each
command runs as a subprocess with the same environment the services have.
"""

import hashlib
import json
import re
import uuid

import aiohttp
import asyncpg
import pytest

from common.kafka import (
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
    Producer,
    standard_topics,
)
from tests.cli.conftest import cli, run_cli
from tests.common import fetch_topic_config
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
STANDARD = sorted(standard_topics().keys())


async def test_connect_prints_the_url_that_starts_oauth(pipeline):
    code, output = cli(pipeline, "connect")
    assert code == 0, output
    url = f"{pipeline.auth_url}/v1/connect"
    assert url in output
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert location.startswith(f"{pipeline.sandbox_url}/v2/auth/authorize/?")
    assert "client_key=sbxdemo" in location and "code_challenge_method=S256" in location


async def test_accounts_lists_the_connected_account_with_a_live_check(pipeline, account):
    code, output = cli(pipeline, "accounts", "--check")
    assert code == 0, output
    row = next(line for line in output.splitlines() if account in line)
    assert "connected" in row and "valid" in row and "invalid" not in row


async def test_accounts_with_a_wrong_api_key_is_a_configuration_error(pipeline, account):
    code, output = cli(pipeline, "accounts", extra_env={"API_KEY": "wrong-key"})
    assert code == 4
    assert "401" in output and "unauthorized" in output and "API_KEY" in output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output


async def test_accounts_json_lists_the_account_and_its_live_check(pipeline, account):
    code, out, err = run_cli("accounts", "--check", "--json", env=pipeline.service_env())
    assert code == 0, err
    accounts = json.loads(out)
    mine = next(a for a in accounts if a["id"] == account)
    assert mine["status"] == "connected" and mine["live"]["valid"] is True


async def test_create_topics_is_idempotent_and_compacts_the_token_topics(pipeline):
    prefix = f"cli{uuid.uuid4().hex[:8]}."
    code, first = cli(pipeline, "create-topics", "--partitions", "2", extra_env={"TOPIC_PREFIX": prefix})
    assert code == 0, first
    assert first.count(": created") == 8
    code, second = cli(pipeline, "create-topics", "--partitions", "2", extra_env={"TOPIC_PREFIX": prefix})
    assert code == 0 and second.count(": unchanged") == 8, second
    for topic in ("tiktok.accounts", "tiktok.access-tokens"):
        config = await fetch_topic_config(pipeline.kafka, prefix + topic)
        assert config["cleanup.policy"] == "compact"


async def test_create_topics_json(pipeline):
    prefix = f"cli{uuid.uuid4().hex[:8]}."
    env = {**pipeline.service_env(), "TOPIC_PREFIX": prefix}
    code, out, err = run_cli("create-topics", "--json", env=env)
    assert code == 0, err
    assert json.loads(out) == {prefix + t: "created" for t in STANDARD}
    code, out, _ = run_cli("create-topics", "--json", env=env)
    assert code == 0 and set(json.loads(out).values()) == {"unchanged"}


async def test_submit_uploads_a_local_file_and_follows_it_to_published(pipeline, published_post):
    post_id, video, code, output = published_post
    assert code == 0, output
    assert f"submitted post {post_id}" in output and "published" in output
    async with aiohttp.ClientSession() as session, session.get(f"{pipeline.sandbox_url}/_sandbox/posts") as r:
        posts = await r.json()
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    matching = [p for p in posts if p["sha256"] == digest]
    assert len(matching) == 1, posts
    assert matching[0]["post_info"]["title"] == "from the CLI #test"
    assert matching[0]["status"] == "PUBLISH_COMPLETE"


async def test_submit_json_and_follow_json_report_the_published_post(pipeline, account, published_post):
    video = published_post[1]
    post_id = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, err = run_cli(
        "submit", str(video), "--account", account, "--post-id", post_id, "--privacy", "SELF_ONLY",
        "--follow", "--timeout", "180", "--json", env=pipeline.service_env(),
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)  # stdout is one JSON document, nothing else
    assert result["post_id"] == post_id and result["state"] == "published"
    assert result["media"] == [f"s3://media/uploads/{post_id}/{video.name}"]
    assert result["events"][0]["state"] == "received"
    assert f"submitted post {post_id}" in err
    code, out, err = run_cli("follow", post_id, "--timeout", "60", "--json", env=pipeline.service_env())
    assert code == 0, err
    followed = json.loads(out)
    assert followed["state"] == "published" and followed["publish_id"] == result["publish_id"]


async def test_submit_refuses_an_invalid_post_and_names_the_field(pipeline, account):
    code, output = cli(pipeline, "submit", "s3://media/nothing.mp4", "--account", account)
    assert code == 2
    assert "privacy_level" in output


async def test_follow_prints_the_timeline_of_a_finished_post(pipeline, published_post):
    post_id = published_post[0]
    code, output = cli(pipeline, "follow", post_id, "--timeout", "60")
    assert code == 0, output
    for state in ("received", "validating", "uploading", "processing", "published"):
        assert state in output


async def test_metrics_prints_the_series_and_follow_the_latest_counts(pipeline, published_post):
    from datetime import UTC, datetime, timedelta

    from common.events import EventType, PostMetricsData, encode
    from common.kafka import TOPIC_POST_METRICS

    post_id = published_post[0]
    code, output = cli(pipeline, "metrics", post_id)
    assert code == 1 and f"no metrics for post {post_id} yet" in output
    producer = Producer(pipeline.kafka)
    await producer.start()
    try:
        start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
        for slot, (after, views) in enumerate([(3600, 1200), (21600, 5400)]):
            data = PostMetricsData(
                post_id=post_id, account_id="acc", tiktok_post_id="7300000000000000001", slot=slot,
                slot_after_s=after, fetched_at=start + timedelta(seconds=after), view_count=views,
                like_count=views // 10, comment_count=3, share_count=1,
            )  # fmt: skip
            value, headers = encode(EventType.post_metrics, data)
            await producer.send(pipeline.prefix + TOPIC_POST_METRICS, post_id, value, headers)
            if slot == 0:  # a redelivered record is shown once
                await producer.send(pipeline.prefix + TOPIC_POST_METRICS, post_id, value, headers)
    finally:
        await producer.stop()
    code, output = cli(pipeline, "metrics", post_id)
    assert code == 0, output
    rows = [line for line in output.splitlines() if "2026-12-01" in line]
    assert len(rows) == 2, output
    assert "1h" in rows[0] and "1,200" in rows[0] and "120" in rows[0]
    assert "6h" in rows[1] and "5,400" in rows[1] and "540" in rows[1]
    code, output = cli(pipeline, "follow", post_id, "--timeout", "60")
    assert code == 0, output
    assert "metrics at 2026-12-01 14:00:00 (+6h): 5,400 views, 540 likes, 3 comments, 1 shares" in output


async def test_tail_prints_every_status_event_as_a_json_line(pipeline, published_post):
    post_id = published_post[0]
    code, output = cli(pipeline, "tail", "--from-beginning", "--idle-exit", "3")
    assert code == 0, output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    mine = [e for e in events if e["post_id"] == post_id]
    assert mine
    assert [e["seq"] for e in mine] == sorted(e["seq"] for e in mine)
    assert mine[0]["state"] == "received" and mine[-1]["state"] == "published"


async def test_tail_writes_only_json_lines_to_stdout_even_around_an_unreadable_record(
    pipeline, published_post
):
    async with Producer(pipeline.kafka) as producer:
        await producer.send(pipeline.prefix + TOPIC_POST_STATUS, b"garbage", b"not an event")
    code, out, err = run_cli("tail", "--from-beginning", "--idle-exit", "3", env=pipeline.service_env())
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(json.loads(line) for line in lines)  # every stdout line parses (jq-safe)
    assert "unreadable status record skipped" in err


async def _records(pipeline, topic):
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(pipeline.prefix + topic, bootstrap_servers=pipeline.kafka,
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=2000)
        return [r for records in batches.values() for r in records]
    finally:
        await consumer.stop()


async def test_replay_dlq_sends_dead_letters_back_to_the_request_topic(pipeline):
    bad = b'{"this is": "not a post request", "nonce": "' + uuid.uuid4().hex.encode() + b'"}'
    async with Producer(pipeline.kafka) as producer:
        await producer.send(pipeline.prefix + TOPIC_POST_REQUESTED, b"acc-unknown", bad)

    async def dead_letters():
        return [r for r in await _records(pipeline, TOPIC_POST_REQUESTED_DLQ) if r.value == bad]

    await wait_for(dead_letters, timeout=60, description="the bad request on the DLQ")
    code, output = cli(pipeline, "replay-dlq", "--dry-run", "--idle-exit", "3")
    assert code == 0 and "1 dead letter(s) found" in output, output
    code, output = cli(pipeline, "replay-dlq", "--idle-exit", "3")
    # Exactly one: the copy that fails again lands on the DLQ behind the mark taken at the start.
    assert code == 0 and "1 dead letter(s) replayed" in output, output
    first = re.findall(r"replayed (\d+:\d+)", output)
    requests = [r for r in await _records(pipeline, TOPIC_POST_REQUESTED) if r.value == bad]
    assert len(requests) == 2  # the original and the replayed copy, byte for byte
    await wait_for(
        lambda: _count(dead_letters, 2), timeout=60, description="the replayed copy dead-lettered again"
    )
    code, out, err = run_cli("replay-dlq", "--idle-exit", "3", "--json", env=pipeline.service_env())
    assert code == 0, err
    result = json.loads(out)
    second = [f"{r['partition']}:{r['offset']}" for r in result["records"]]
    assert result["count"] == 1 and result["dry_run"] is False
    assert len(second) == 1 and second != first, result  # the committed one is not replayed


async def _count(fetch, expected):
    return len(await fetch()) >= expected


# After the DLQ test: the rejected request lands on the DLQ too.
async def test_a_rejected_post_exits_1_and_says_why(pipeline, account, tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_bytes(b"this is not a video " * 100)
    code, out, err = run_cli(
        "submit", str(not_a_video), "--account", account, "--privacy", "SELF_ONLY",
        "--follow", "--timeout", "120", env=pipeline.service_env(),
    )  # fmt: skip
    assert code == 1, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: post cli-") and "ended rejected (wrong_format" in last, err


async def test_migrate_applies_both_services_schemas(pipeline, database_url):
    code, output = cli(pipeline, "migrate", extra_env={"DATABASE_URL": database_url})
    assert code == 0, output
    conn = await asyncpg.connect(database_url)
    try:
        for schema in ("auth", "publish"):
            applied = await conn.fetchval(f"SELECT count(*) FROM {schema}.schema_migrations")
            assert applied >= 1
    finally:
        await conn.close()
    code, output = cli(pipeline, "migrate", extra_env={"DATABASE_URL": database_url})
    assert code == 0 and output.count("nothing (up to date)") >= 1, output


async def test_rotate_keys_moves_every_ciphertext_to_the_new_key(pipeline, account):
    # Last in the module: afterwards the running auth_service (old key ring) cannot read the vault.
    from common.cipher import generate_key

    ring = f"{pipeline.token_keys},k2:{generate_key()}"
    code, output = cli(pipeline, "rotate-keys", extra_env={"TOKEN_KEYS": ring, "TOKEN_ACTIVE_KEY_ID": "k2"})
    assert code == 0, output
    conn = await asyncpg.connect(pipeline.database_url)
    try:
        rows = await conn.fetch("SELECT access_token_ct, refresh_token_ct FROM auth.accounts")
    finally:
        await conn.close()
    assert rows
    for row in rows:
        assert row["access_token_ct"].startswith("v1.k2.") and row["refresh_token_ct"].startswith("v1.k2.")
