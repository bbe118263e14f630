"""Token refresh against the sandbox with rotation `always`: schedule, retries, invalid_grant,
on-demand requests, and the rotation race across three replicas sharing one database."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from auth_service.adapters.vault import REFRESH
from auth_service.settings import RefreshTuning
from common.events import EventType, RefreshRequestedData, encode
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS, TOPIC_TOKEN_REFRESH_REQUESTED
from common.tracing import current_carrier, inject_headers, tracer
from tests.auth.harness import (
    Keys,
    RunningAuth,
    TopicReader,
    make_settings,
    new_sandbox_app,
    running_auth,
    seed_accounts,
)
from tests.waiting import wait_for, wait_for_value
from tiktok_pipeline.local import free_port
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import RunningSandbox, run_sandbox

pytestmark = pytest.mark.stack

TOKEN_PATH = "/v2/oauth/token/"

FAST = RefreshTuning(
    poll_interval_s=0.2,
    concurrency=20,
    call_timeout_s=5.0,
    lease_s=10.0,
    backoff_base_s=0.2,
    backoff_cap_s=1.0,
    request_min_interval_s=30.0,
)


@contextlib.asynccontextmanager
async def replicas(
    stack,
    database_url,
    topic_prefix,
    sb: RunningSandbox,
    count: int,
    *,
    keys: Keys | None = None,
    refresh: RefreshTuning = FAST,
) -> AsyncIterator[list[RunningAuth]]:
    ports = [free_port() for _ in range(count)]
    app = await new_sandbox_app(sb, ports)
    keys = keys or Keys.fresh()
    async with contextlib.AsyncExitStack() as stack_:
        running = []
        for i, port in enumerate(ports):
            settings = make_settings(
                stack=stack,
                database_url=database_url,
                topic_prefix=topic_prefix,
                sandbox=sb,
                app=app,
                port=port,
                keys=keys,
                refresh=refresh,
                instance_id=f"replica-{i}",
            )
            running.append(await stack_.enter_async_context(running_auth(settings)))
        running[0].tiktok_app = app  # type: ignore[attr-defined]
        yield running


async def db_rows(database_url: str, sql: str = "SELECT * FROM auth.accounts ORDER BY id") -> list:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def token_calls(counts: dict) -> int:
    return sum(row["calls"] for row in counts["calls"] if row["endpoint"] == TOKEN_PATH)


def refresh_tokens_per_open_id(sb: RunningSandbox) -> Counter:
    return Counter(rt.grant.open_id for rt in sb.store.refresh_tokens.values())


@pytest.fixture
async def short_lived_sandbox(tmp_path) -> AsyncIterator[RunningSandbox]:
    config = SandboxConfig(
        data_dir=str(tmp_path / "sb"),
        allow_http_web_redirects=True,
        access_token_ttl_s=8,
        refresh_rotation="always",
    )
    async with run_sandbox(config) as sb:
        yield sb


async def test_refresh_follows_expires_in_and_stores_the_newest_refresh_token(
    stack, database_url, topic_prefix, short_lived_sandbox
):
    sb = short_lived_sandbox
    async with (
        replicas(stack, database_url, topic_prefix, sb, 1) as (auth,),
        TopicReader(stack.kafka_bootstrap, topic_prefix) as reader,
    ):
        [seed] = await seed_accounts(sb, auth.repo, auth.tiktok_app, 1, due_in=0)
        # 8-second tokens: refresh at half the lifetime (a 5-minute lead is impossible), with jitter.
        row = (await wait_for(lambda: _version_at_least(database_url, 2), timeout=15))[0]
        lead = (row["access_expires_at"] - row["refresh_due_at"]).total_seconds()
        assert 4 <= lead <= 4.5
        # The stored refresh token is the one the sandbox issued last (rotation `always`).
        stored = auth.repo.vault.open(row["refresh_token_ct"], account_id=seed.account_id, purpose=REFRESH)
        live = [rt.token for rt in sb.store.refresh_tokens.values() if rt.valid(sb.store.now())]
        assert stored in live and stored != seed.refresh_token
        # And the next cycle happens on its own, from the new expires_in.
        await wait_for(lambda: _version_at_least(database_url, 3), timeout=15)
        refreshed = await wait_for(
            lambda: len(reader.events(TOPIC_ACCOUNTS, EventType.account_refreshed)) >= 2 or None, timeout=20
        )
        assert refreshed
        versions = [e["data"]["token_version"] for e in reader.events(TOPIC_ACCESS_TOKENS)]
        assert versions[:2] == [2, 3]
    assert (await db_rows(database_url))[0]["status"] == "connected"


async def _version_at_least(database_url: str, version: int):
    rows = await db_rows(database_url)
    return rows if rows and all(r["token_version"] >= version for r in rows) else None


async def test_transient_failures_are_retried_with_backoff(
    stack, database_url, topic_prefix, short_lived_sandbox
):
    sb = short_lived_sandbox
    await sb.control.inject_fault(TOKEN_PATH, count=2, status=500, error_code="server_error")
    await sb.control.inject_fault(TOKEN_PATH, count=1, status=429, error_code="rate_limit_exceeded")
    async with replicas(stack, database_url, topic_prefix, sb, 1) as (auth,):
        await seed_accounts(sb, auth.repo, auth.tiktok_app, 1, due_in=0)
        row = (await wait_for(lambda: _version_at_least(database_url, 2), timeout=20))[0]
        assert row["refresh_failures"] == 0 and row["last_error"] is None and row["status"] == "connected"
    outcomes = _refreshes(auth)  # the replica has stopped: these numbers are final
    assert outcomes["retry"] == 3 and outcomes["ok"] >= 1 and outcomes["reauth_required"] == 0
    # 3 refused (500, 500, 429), then accepted (and perhaps the next cycle already).
    assert token_calls(await sb.control.call_counts()) == 3 + outcomes["ok"]


async def test_invalid_grant_marks_reauth_required_and_announces_it(
    stack, database_url, topic_prefix, short_lived_sandbox
):
    sb = short_lived_sandbox
    async with (
        replicas(stack, database_url, topic_prefix, sb, 1) as (auth,),
        TopicReader(stack.kafka_bootstrap, topic_prefix) as reader,
    ):
        [seed] = await seed_accounts(sb, auth.repo, auth.tiktok_app, 1, due_in=3600)
        await sb.control.revoke_token(seed.refresh_token, reason=1)  # the user removed the app
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE auth.accounts SET refresh_due_at = now()")
        finally:
            await conn.close()
        row = await wait_for_value(
            lambda: _status(database_url), "reauth_required", timeout=15, description="reauth_required"
        )
        assert row == "reauth_required"
        events = await wait_for(
            lambda: reader.events(TOPIC_ACCOUNTS, EventType.account_reauth_required), timeout=20
        )
        assert events[0]["data"]["account_id"] == seed.account_id
        assert events[0]["data"]["status"] == "reauth_required"
        assert events[0]["data"]["reason"] == "invalid_grant"
        rows = await db_rows(database_url)
        assert rows[0]["refresh_due_at"] is None  # no more attempts with a dead grant
        # One call, no retries.
        assert token_calls(await sb.control.call_counts()) == 1


async def _status(database_url):
    rows = await db_rows(database_url)
    return rows[0]["status"] if rows else None


async def _request_refresh(bootstrap: str, topic: str, events: list[RefreshRequestedData]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for data in events:
            value, headers = encode(EventType.refresh_requested, data)
            await producer.send_and_wait(topic, value=value, key=data.account_id.encode(), headers=headers)
    finally:
        await producer.stop()


async def test_refresh_requested_event_refreshes_now_and_storms_collapse(
    stack, database_url, topic_prefix, short_lived_sandbox
):
    sb = short_lived_sandbox
    async with replicas(stack, database_url, topic_prefix, sb, 2) as auths:
        [seed] = await seed_accounts(sb, auths[0].repo, auths[0].tiktok_app, 1, due_in=3600)
        topic = topic_prefix + TOPIC_TOKEN_REFRESH_REQUESTED
        storm = [
            RefreshRequestedData(
                account_id=seed.account_id, reason="access_token_invalid", seen_token_version=1
            )
            for _ in range(25)
        ]
        started = time.monotonic()
        await _request_refresh(stack.kafka_bootstrap, topic, storm)
        await wait_for(lambda: _version_at_least(database_url, 2), timeout=30)
        assert time.monotonic() - started < 30
        # Let every request of the storm be consumed, then check: one refresh for 25 requests.
        await _request_refresh(
            stack.kafka_bootstrap,
            topic,
            [RefreshRequestedData(account_id="acc_unknown", reason="marker", seen_token_version=0)],
        )
        await wait_for(
            lambda: sum(_handled(a) for a in auths) >= 26, timeout=30, description="all requests handled"
        )
        assert (await db_rows(database_url))[0]["token_version"] == 2
        assert token_calls(await sb.control.call_counts()) == 1
        # tiktok_consumer_lag (committed vs end offsets, on the loop's 5 s timer): all handled.
        await wait_for(
            lambda: (lags := [lag for a in auths for lag in _lags(a)]) and all(lag == 0 for lag in lags),
            timeout=20,
            description="consumer lag 0 on every replica",
        )
        # A request that saw the current version refreshes again.
        await _request_refresh(
            stack.kafka_bootstrap,
            topic,
            [
                RefreshRequestedData(
                    account_id=seed.account_id, reason="access_token_invalid", seen_token_version=2
                )
            ],
        )
        await wait_for(lambda: _version_at_least(database_url, 3), timeout=30)


def _refreshes(auth: RunningAuth) -> dict[str, float]:
    from auth_service.keys import METRICS

    registry = auth.app[METRICS].registry
    return {
        outcome: registry.get_sample_value("tiktok_token_refreshes_total", {"outcome": outcome}) or 0.0
        for outcome in ("ok", "retry", "stale", "reauth_required")
    }


def _lags(auth: RunningAuth) -> list[float]:
    from auth_service.keys import METRICS

    return [
        sample.value
        for metric in auth.app[METRICS].registry.collect()
        if metric.name == "tiktok_consumer_lag"
        for sample in metric.samples
    ]


def _handled(auth: RunningAuth) -> int:
    from auth_service.keys import REFRESH_REQUESTS

    return auth.app[REFRESH_REQUESTS].handled


@pytest.fixture
async def rotating_sandbox(tmp_path) -> AsyncIterator[RunningSandbox]:
    config = SandboxConfig(
        data_dir=str(tmp_path / "sb"),
        allow_http_web_redirects=True,
        access_token_ttl_s=30,
        refresh_rotation="always",
    )
    async with run_sandbox(config) as sb:
        yield sb


@pytest.mark.slow
async def test_rotation_race_three_replicas_refresh_each_account_once_per_cycle(
    stack, database_url, topic_prefix, rotating_sandbox
):
    sb = rotating_sandbox
    accounts = 500
    async with replicas(stack, database_url, topic_prefix, sb, 3) as auths:
        seeds = await seed_accounts(sb, auths[0].repo, auths[0].tiktok_app, accounts, due_in=1)
        # Cycle 1 for all (due now), then cycle 2 on the schedule from expires_in (~15 s later).
        await wait_for(lambda: _version_at_least(database_url, 3), timeout=60, interval=0.5)
    # All replicas stopped gracefully: nothing is in flight, so the books must balance exactly.
    rows = await db_rows(database_url)
    assert len(rows) == accounts
    assert Counter(r["status"] for r in rows) == {"connected": accounts}
    issued = refresh_tokens_per_open_id(sb)
    by_open_id = {s.open_id: s for s in seeds}
    for row in rows:
        # 1 refresh token from the seed grant + 1 per successful refresh = the stored version.
        assert issued[row["open_id"]] == row["token_version"], row["id"]
        stored = auths[0].repo.vault.open(row["refresh_token_ct"], account_id=row["id"], purpose=REFRESH)
        assert sb.store.refresh_tokens[stored].valid(sb.store.now())
        assert row["open_id"] in by_open_id
    total_refreshes = sum(r["token_version"] - 1 for r in rows)
    # Not one wasted or duplicate call: every call to the token endpoint was a successful refresh.
    assert token_calls(await sb.control.call_counts()) == total_refreshes
    assert min(r["token_version"] for r in rows) >= 3
    leased = await db_rows(
        database_url, "SELECT count(*) AS n FROM auth.accounts WHERE lease_owner IS NOT NULL"
    )
    assert leased[0]["n"] == 0
    # Each replica took a share of the work, and none saw a stale or failed refresh.
    per_replica = [_refreshes(a) for a in auths]
    assert all(r["ok"] > 0 for r in per_replica), per_replica
    assert sum(r["ok"] for r in per_replica) == total_refreshes
    assert all(r["retry"] == r["stale"] == r["reauth_required"] == 0 for r in per_replica), per_replica
    print(json.dumps({"accounts": accounts, "refreshes": total_refreshes}))


async def test_expired_refresh_token_needs_reauth_without_calling_tiktok(
    stack, database_url, topic_prefix, short_lived_sandbox
):
    sb = short_lived_sandbox
    async with replicas(stack, database_url, topic_prefix, sb, 1) as (auth,):
        await seed_accounts(sb, auth.repo, auth.tiktok_app, 1, due_in=3600)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE auth.accounts SET refresh_expires_at = now(), refresh_due_at = now()")
        finally:
            await conn.close()
        assert await wait_for_value(lambda: _status(database_url), "reauth_required", timeout=15)
        assert (await db_rows(database_url))[0]["last_error"] == "refresh_token_expired"
    assert token_calls(await sb.control.call_counts()) == 0


async def test_a_ciphertext_under_an_unknown_key_is_parked_not_retried_hot(
    stack, database_url, topic_prefix, short_lived_sandbox
):
    sb = short_lived_sandbox
    async with replicas(stack, database_url, topic_prefix, sb, 1) as (auth,):
        seeds = await seed_accounts(sb, auth.repo, auth.tiktok_app, 3, due_in=3600)
        conn = await asyncpg.connect(database_url)
        try:
            # One account's refresh token was written under a key this replica doesn't have.
            await conn.execute(
                "UPDATE auth.accounts SET refresh_token_ct = 'v1.gone.AAAA' WHERE id = $1",
                seeds[0].account_id,
            )
            await conn.execute("UPDATE auth.accounts SET refresh_due_at = now()")
        finally:
            await conn.close()
        await wait_for(
            lambda: _versions_are(database_url, {seeds[1].account_id: 2, seeds[2].account_id: 2}), timeout=15
        )
        rows = {r["id"]: r for r in await db_rows(database_url)}
        parked = rows[seeds[0].account_id]
        assert parked["last_error"] == "decryption_failed" and parked["lease_owner"] is None
        assert parked["status"] == "connected" and parked["token_version"] == 1
        assert (parked["refresh_due_at"] - parked["updated_at"]).total_seconds() > 3000


async def _versions_are(database_url, expected: dict[str, int]) -> bool:
    rows = {r["id"]: r["token_version"] for r in await db_rows(database_url)}
    return all(rows.get(k) == v for k, v in expected.items())


async def test_a_refresh_publish_service_asks_for_joins_the_posts_trace(
    stack, database_url, topic_prefix, short_lived_sandbox, spans
):
    """The request record's traceparent is continued by auth_service: the refresh is a child of it,
    and the token events it causes carry the same trace."""
    sb = short_lived_sandbox
    async with replicas(stack, database_url, topic_prefix, sb, 1) as auths:
        [seed] = await seed_accounts(sb, auths[0].repo, auths[0].tiktok_app, 1, due_in=3600)
        topic = topic_prefix + TOPIC_TOKEN_REFRESH_REQUESTED
        reason = "access_token_invalid"
        data = RefreshRequestedData(account_id=seed.account_id, reason=reason, seen_token_version=1)
        with tracer("test").start_as_current_span("publish post") as post:
            value, headers = encode(EventType.refresh_requested, data)
            producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
            await producer.start()
            try:
                traced = inject_headers(headers, current_carrier())
                await producer.send_and_wait(topic, value=value, key=data.account_id.encode(), headers=traced)
            finally:
                await producer.stop()
        await wait_for(lambda: _version_at_least(database_url, 2), timeout=30)
        trace_id = post.get_span_context().trace_id
        token_events = f"{topic_prefix}{TOPIC_ACCESS_TOKENS} publish"
        await wait_for(
            lambda: any(
                s.name == token_events and s.context.trace_id == trace_id for s in spans.get_finished_spans()
            ),
            timeout=20,
            description="the new token's event relayed in the post's trace",
        )

    finished = spans.get_finished_spans()
    refresh = [s for s in finished if s.name == "refresh token" and s.context.trace_id == trace_id]
    assert len(refresh) == 1, [s.name for s in finished]
    consumed = next(s for s in finished if s.context.span_id == refresh[0].parent.span_id)
    assert consumed.name == f"{topic} process"
    assert consumed.parent.span_id == post.get_span_context().span_id
    assert dict(refresh[0].attributes)["refresh.outcome"] == "ok"


async def test_an_out_of_range_seen_version_is_skipped_and_the_request_behind_it_refreshes(
    stack, database_url, topic_prefix, short_lived_sandbox
):
    """``seen_token_version`` = 2^63 (issue 12, point 2): it decoded, asyncpg refused the argument and
    the loop took that for an outage, retrying it for ever, so the requests behind it on the partition
    waited for good. Now it is refused by the model, skipped and named, and the next one refreshes."""
    sb = short_lived_sandbox
    async with replicas(stack, database_url, topic_prefix, sb, 1) as (auth,):
        [seed] = await seed_accounts(sb, auth.repo, auth.tiktok_app, 1, due_in=3600)
        good = RefreshRequestedData(
            account_id=seed.account_id, reason="access_token_invalid", seen_token_version=1
        )
        value, headers = encode(EventType.refresh_requested, good)
        envelope = json.loads(value)
        envelope["data"]["seen_token_version"] = 2**63
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        try:
            topic = topic_prefix + TOPIC_TOKEN_REFRESH_REQUESTED
            key = seed.account_id.encode()  # one key: one partition, the bad record first
            await producer.send_and_wait(topic, value=json.dumps(envelope).encode(), key=key, headers=headers)
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        finally:
            await producer.stop()
        await wait_for(
            lambda: _version_at_least(database_url, 2), timeout=30, description="the refresh behind it"
        )
        from auth_service.keys import METRICS

        skipped = auth.app[METRICS].registry.get_sample_value(
            "state_event_bad_total", {"topic": topic, "code": "wrong_schema"}
        )
        assert skipped == 1, skipped
