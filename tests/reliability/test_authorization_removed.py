"""The creator removes the app in TikTok (issue 12, point 9), end to end through the sandbox's signed
``authorization.removed`` webhook.

TikTok calls the app's one webhook URL (publish_service); publish_service relays it to auth_service on
``tiktok.token.refresh-requested`` (reason ``authorization_removed``); auth_service forgets the account,
announces it ``revoked`` on ``tiktok.accounts`` and tombstones its access token; a post for it then
fails with ``account_revoked`` and TikTok is not called for it. Before, the webhook was ignored: the
account stayed connected and the post went to TikTok with a dead token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS, TOPIC_POST_REQUESTED, TOPIC_POST_STATUS
from common.settings import EnvReader
from tests.reliability.hostile.harness import ffmpeg_clip, read_topics
from tests.reliability.hostile.kafka_cases import envelope
from tests.waiting import wait_for
from tiktok_pipeline.local import LocalPipeline

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]

INIT_PATHS = ("/v2/post/publish/video/init/", "/v2/post/publish/inbox/video/init/")


@pytest_asyncio.fixture
async def pipeline(stack: Any, tmp_path) -> AsyncIterator[LocalPipeline]:
    p = LocalPipeline(EnvReader({**stack.env(), "S3_BUCKET": "media"}), tmp_path)
    try:
        await p.start()
        yield p
    finally:
        await p.stop()


async def test_authorization_removed_revokes_the_account_and_its_posts_fail_without_calling_tiktok(
    pipeline: LocalPipeline, tmp_path
) -> None:
    p = pipeline
    account_id = await p.connect_creator()
    api = {"Authorization": f"Bearer {p.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{p.sandbox_url}/_sandbox/secrets") as r:
            tokens = (await r.json())["access_tokens"]
        assert tokens
        for token in tokens:  # the creator removes the app: TikTok signs and sends the webhook
            async with http.post(f"{p.sandbox_url}/_sandbox/tokens/revoke", json={"token": token}) as r:
                assert r.status == 200, await r.text()

        async def forgotten() -> bool:
            async with http.get(f"{p.auth_url}/v1/accounts/{account_id}", headers=api) as r:
                return r.status == 404

        await wait_for(forgotten, 60, 0.5, description="auth_service forgets the revoked account")

        async def announced() -> list[Any] | None:
            records = await read_topics(p, [TOPIC_ACCOUNTS, TOPIC_ACCESS_TOKENS])
            mine = [r for r in records if r.key == account_id.encode()]
            revoked = [
                r
                for r in mine
                if r.topic.endswith(TOPIC_ACCOUNTS) and json.loads(r.value)["data"]["status"] == "revoked"
            ]
            tombstones = [r for r in mine if r.topic.endswith(TOPIC_ACCESS_TOKENS) and r.value is None]
            return revoked + tombstones if revoked and tombstones else None

        events = await wait_for(announced, 30, 0.5, description="the revoked event and the token tombstone")
        revoked = json.loads(events[0].value)
        assert revoked["type"] == "tiktok.account.disconnected"
        assert revoked["data"]["reason"] == "authorization_removed"

        clip = await ffmpeg_clip(tmp_path / "clip.mp4", 2)
        key = f"revoked/{uuid.uuid4().hex[:8]}.mp4"
        async with p.object_store() as store:
            await store.put_bytes(p.bucket, key, clip.read_bytes())
        calls_before = await _init_calls(http, p)
        post_id = f"after-revoke-{uuid.uuid4().hex[:6]}"
        data = {
            "post_id": post_id,
            "account_id": account_id,
            "kind": "video",
            "mode": "direct",
            "privacy_level": "SELF_ONLY",
            "video": {"uri": f"s3://{p.bucket}/{key}"},
        }
        producer = AIOKafkaProducer(bootstrap_servers=p.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(
                p.prefix + TOPIC_POST_REQUESTED, json.dumps(envelope(data)).encode(), key=account_id.encode()
            )
        finally:
            await producer.stop()

        async def failed() -> dict[str, Any] | None:
            records = await read_topics(p, [TOPIC_POST_STATUS])
            states = [json.loads(r.value)["data"] for r in records if r.key == post_id.encode()]
            return next((s for s in states if s["state"] in ("failed", "rejected", "published")), None)

        final = await wait_for(failed, 60, 0.5, description="the post's end")
        assert final["state"] == "failed" and final["error"]["code"] == "account_revoked", final
        assert "removed the app" in final["error"]["message"]
        assert await _init_calls(http, p) == calls_before, "TikTok was called for a revoked account"


async def _init_calls(http: aiohttp.ClientSession, p: LocalPipeline) -> int:
    async with http.get(f"{p.sandbox_url}/_sandbox/calls") as r:
        calls = (await r.json())["calls"]
    return sum(c["calls"] for c in calls if c["endpoint"] in INIT_PATHS)
