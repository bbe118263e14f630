"""Hostile or broken records on the state topics publish_service reads in full (issue 12, points 1, 2
and 4): each bad record is skipped, counted and named, and the good record behind it on the same
partition takes effect; a tombstone on ``tiktok.access-tokens`` deletes the stored token.

Before the fix, a record that passed the model and that PostgreSQL refused stopped the state reader
for good (it replayed from offset 0 into the same record), so nothing behind it was ever applied.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from common.cipher import transport_purpose
from common.events import AccessTokenData, AccountData, AccountStatus, EventType, encode
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS
from publish_service.app import create_app
from publish_service.keys import METRICS
from tests.publish.harness import Harness
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

REFUSE_OPEN_ID = """
CREATE FUNCTION publish.refuse_open_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.open_id = 'refused-by-database' THEN
        RAISE EXCEPTION 'value out of range' USING ERRCODE = '22003';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_open_id BEFORE INSERT OR UPDATE ON publish.accounts
    FOR EACH ROW EXECUTE FUNCTION publish.refuse_open_id();
"""


@contextlib.asynccontextmanager
async def running(h: Harness) -> AsyncIterator[tuple[web.Application, str]]:
    app = create_app(h.settings())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        await wait_for(lambda: _ready(base), 60, 0.2, description="publish_service /readyz")
        yield app, base
    finally:
        await runner.cleanup()


async def _ready(base: str) -> bool:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/readyz") as r:
        return r.status == 200


def token(account_id: str, version: int, **patch: Any) -> bytes:
    data = AccessTokenData(
        account_id=account_id,
        open_id="good",
        scopes=["video.publish"],
        token_version=version,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        ciphertext="v1.unknown.AAAA",  # a key this replica does not hold: kept, not checked here
    )
    return _patched(encode(EventType.access_token, data)[0], patch)


def account(account_id: str, **patch: Any) -> bytes:
    data = AccountData(account_id=account_id, open_id="good", status=AccountStatus.connected, token_version=1)
    return _patched(encode(EventType.account_connected, data)[0], patch)


def _patched(value: bytes, patch: dict[str, Any]) -> bytes:
    """The record as a broken or hostile producer writes it: any JSON, past our own model."""
    envelope = json.loads(value)
    envelope["data"].update(patch)
    return json.dumps(envelope).encode()


async def row(h: Harness, account_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(h.database_url)
    try:
        return await conn.fetchrow("SELECT * FROM publish.accounts WHERE account_id = $1", account_id)
    finally:
        await conn.close()


CASES: list[tuple[str, str, Callable[[str], bytes], Callable[[str], bytes], str, str]] = [
    # id, topic, bad record, good record behind it, the column the good one sets, its value
    (
        "token-version-over-int64",
        TOPIC_ACCESS_TOKENS,
        lambda a: token(a, 1, token_version=2**63),
        lambda a: token(a, 1),
        "token_version",
        "1",
    ),
    (
        "token-expires-at-year-10000-in-utc",
        TOPIC_ACCESS_TOKENS,
        lambda a: token(a, 1, expires_at="9999-12-31T23:59:59-14:00"),
        lambda a: token(a, 1),
        "token_version",
        "1",
    ),
    (
        "token-refused-by-database",
        TOPIC_ACCESS_TOKENS,
        lambda a: token(a, 2, open_id="refused-by-database"),
        lambda a: token(a, 1),
        "token_version",
        "1",
    ),
    (
        "account-version-over-int64",
        TOPIC_ACCOUNTS,
        lambda a: account(a, token_version=2**63),
        lambda a: account(a),
        "status",
        "connected",
    ),
    (
        "account-refused-by-database",
        TOPIC_ACCOUNTS,
        lambda a: account(a, open_id="refused-by-database"),
        lambda a: account(a),
        "status",
        "connected",
    ),
]


@pytest.mark.parametrize(
    ("case", "topic", "bad", "good", "column", "value"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_bad_state_record_is_skipped_and_the_one_behind_it_applies(
    harness: Harness,
    case: str,
    topic: str,
    bad: Callable[[str], bytes],
    good: Callable[[str], bytes],
    column: str,
    value: str,
) -> None:
    h = harness
    account_id = f"acc-{case}"
    async with running(h) as (app, base):
        conn = await asyncpg.connect(h.database_url)
        try:
            await conn.execute(REFUSE_OPEN_ID)
        finally:
            await conn.close()
        await h.producer.send(h.topic(topic), account_id, bad(account_id))
        await h.producer.send(h.topic(topic), account_id, good(account_id))  # same key: same partition

        async def applied() -> bool:
            r = await row(h, account_id)
            return r is not None and str(r[column]) == value

        await wait_for(applied, 30, 0.2, description=f"the good record behind {case} applied")
        assert await _ready(base), "/readyz must stay 200"
        skipped = _skipped(app, h.topic(topic))
        assert skipped == 1, f"state_event_bad counted {skipped} for {case}"
        assert (await row(h, account_id))["open_id"] == "good"


async def test_a_replayed_token_with_a_rewritten_version_is_refused(harness: Harness) -> None:
    """Issue 12, point 3: a genuine older record replayed with a higher ``token_version`` was stored,
    and every later real token was ignored. The version is now in the ciphertext's associated data."""
    h = harness
    topic = h.topic(TOPIC_ACCESS_TOKENS)

    def sealed(version: int, plain: str, sealed_as: int | None = None) -> bytes:
        ct = h.cipher.encrypt(plain, account_id="acc-r", purpose=transport_purpose(sealed_as or version))
        return token("acc-r", version, ciphertext=ct)

    async with running(h) as (app, _):
        await h.producer.send(topic, "acc-r", sealed(1, "tok-1"))
        await h.producer.send(topic, "acc-r", sealed(2, "tok-2"))
        await h.producer.send(topic, "acc-r", sealed(99, "tok-1", sealed_as=1))  # the replay
        await h.producer.send(topic, "acc-r", sealed(3, "tok-3"))

        async def at_3() -> bool:
            r = await row(h, "acc-r")
            return r is not None and r["token_version"] == 3

        await wait_for(at_3, 30, 0.2, description="the real token v3 applied behind the replay")
        r = await row(h, "acc-r")
        assert (
            h.cipher.decrypt(r["token_ciphertext"], account_id="acc-r", purpose=transport_purpose(3))
            == "tok-3"
        )
        assert _skipped(app, topic, "decryption_failed") == 1


async def test_a_tombstone_on_access_tokens_deletes_the_stored_token(harness: Harness) -> None:
    h = harness
    topic = h.topic(TOPIC_ACCESS_TOKENS)
    async with running(h) as (app, _):
        await h.producer.send(topic, "acc-gone", token("acc-gone", 3))
        await wait_for(lambda: _has_token(h, "acc-gone", True), 30, 0.2, description="the token stored")
        await h.producer.send(topic, "acc-gone", None)
        await wait_for(lambda: _has_token(h, "acc-gone", False), 30, 0.2, description="the token deleted")
        # A replay of the same record must not bring it back; a bad record behind it on the same
        # partition marks when the replay has been read.
        await h.producer.send(topic, "acc-gone", token("acc-gone", 3))
        await h.producer.send(topic, "acc-gone", token("acc-gone", 1, token_version=2**63))
        await wait_for(lambda: _skipped(app, topic) >= 1, 30, 0.2, description="the replay read")
        r = await row(h, "acc-gone")
        assert r is not None and r["token_ciphertext"] is None and r["token_expires_at"] is None


def _skipped(app: web.Application, topic: str, code: str | None = None) -> float:
    return sum(
        s.value
        for m in app[METRICS].registry.collect()
        if m.name == "state_event_bad"
        for s in m.samples
        if s.name == "state_event_bad_total"
        and s.labels["topic"] == topic
        and code in (None, s.labels["code"])
    )


async def _has_token(h: Harness, account_id: str, present: bool) -> bool:
    r = await row(h, account_id)
    return r is not None and (r["token_ciphertext"] is not None) is present
