"""What publish_service keeps in PostgreSQL (issue 12, points 7 and 10): an ``upload_url`` (its
``upload_token`` is a bearer credential for an hour) is stored only encrypted, and webhook receipts
are pruned by age."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.publish.harness import MIB, Harness, running_service
from tests.publish.payloads import post_request
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

UPLOAD = "/video/"


async def _post_row(h: Harness, post_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(h.database_url)
    try:
        return await conn.fetchrow("SELECT * FROM publish.posts WHERE post_id = $1", post_id)
    finally:
        await conn.close()


async def test_the_upload_url_is_stored_encrypted(harness: Harness, video_3s: Path) -> None:
    h = harness
    await h.connect_account("acc-1", "alice")
    await h.sandbox.control.inject_fault(UPLOAD, count=3, latency_ms=1500)  # hold it in "uploading"
    async with running_service(h.settings()):
        video = await h.put_padded_video("videos/sealed.mp4", video_3s, 12 * MIB)
        await h.request_post(post_request("sealed", video.uri))

        async def stored() -> asyncpg.Record | None:
            row = await _post_row(h, "sealed")
            return row if row is not None and row["upload_url"] is not None else None

        row = await wait_for(stored, 60, 0.05, description="the upload_url stored")
        stored_url = row["upload_url"]
        assert "upload_token" not in stored_url and "://" not in stored_url, stored_url
        assert stored_url.startswith("v1.k1.")
        plain = h.cipher.decrypt(stored_url, account_id="sealed", purpose="upload_url")
        assert "upload_token=" in plain and plain.startswith(h.sandbox.base_url)
        await h.wait_state("sealed", "published", timeout=120)
    posts = [p for p in await h.sandbox.control.posts() if p["status"] == "PUBLISH_COMPLETE"]
    assert len(posts) == 1 and posts[0]["sha256"] == video.sha256


async def test_a_plain_upload_url_left_by_an_older_replica_is_not_used(
    harness: Harness, video_3s: Path
) -> None:
    """A row holding a plain URL (an old replica during a rolling upgrade): it does not open, so the
    upload task counts as gone; status decides, a new init follows, and the post is published once."""
    h = harness
    await h.connect_account("acc-1", "alice")
    await h.sandbox.control.inject_fault(UPLOAD, count=None, latency_ms=2000)
    async with running_service(h.settings()):
        video = await h.put_padded_video("videos/legacy.mp4", video_3s, 12 * MIB)
        await h.request_post(post_request("legacy", video.uri))

        async def uploading() -> bool:
            row = await _post_row(h, "legacy")
            return row is not None and row["upload_url"] is not None

        await wait_for(uploading, 60, 0.05, description="uploading")
    row = await _post_row(h, "legacy")
    plain = h.cipher.decrypt(row["upload_url"], account_id="legacy", purpose="upload_url")
    conn = await asyncpg.connect(h.database_url)
    try:
        await conn.execute("UPDATE publish.posts SET upload_url = $1 WHERE post_id = 'legacy'", plain)
    finally:
        await conn.close()
    await h.sandbox.control.clear_faults()
    async with running_service(h.settings()):
        await h.wait_state("legacy", "published", timeout=120)
    posts = [p for p in await h.sandbox.control.posts() if p["status"] == "PUBLISH_COMPLETE"]
    assert len(posts) == 1 and posts[0]["sha256"] == video.sha256


async def test_old_webhook_receipts_are_pruned(harness: Harness) -> None:
    h = harness
    settings = h.settings(PUBLISH_HOUSEKEEPING_INTERVAL_S="0.2", PUBLISH_WEBHOOK_RECEIPTS_KEEP_S="3600")
    async with running_service(settings):
        conn = await asyncpg.connect(h.database_url)
        try:
            await conn.executemany(
                "INSERT INTO publish.webhook_events (dedupe_key, received_at) "
                "VALUES ($1, now() - make_interval(mins => $2))",
                [(f"old-{i}", 120) for i in range(50)] + [(f"new-{i}", 10) for i in range(5)],
            )

            async def pruned() -> bool:
                return (
                    await conn.fetchval(
                        "SELECT count(*) FROM publish.webhook_events WHERE dedupe_key LIKE 'old-%'"
                    )
                    == 0
                )

            await wait_for(pruned, 30, 0.2, description="old receipts pruned")
            kept = await conn.fetchval(
                "SELECT count(*) FROM publish.webhook_events WHERE dedupe_key LIKE 'new-%'"
            )
            assert kept == 5
        finally:
            await conn.close()
