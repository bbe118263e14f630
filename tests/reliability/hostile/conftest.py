"""One pipeline and one corpus run for every test of this package (package-scoped, one event loop)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from common.settings import EnvReader
from tests.reliability.hostile.harness import CREATOR_MAX_S, Run, send_corpus
from tiktok_pipeline.local import CREATOR, LocalPipeline


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def pipeline(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalPipeline]:
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


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def run(pipeline: LocalPipeline, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The whole corpus, sent once; what the pipeline made of each record."""
    return await send_corpus(pipeline, tmp_path_factory.mktemp("media"))


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def http(run: Run) -> AsyncIterator[aiohttp.ClientSession]:
    """One client for the HTTP cases; the corpus run comes first so both share the pipeline's time."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session
