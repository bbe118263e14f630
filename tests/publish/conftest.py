"""Fixtures for the publish_service tests: a sandbox app and creator, the harness, test media."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from common.db import apply_migrations, create_pool
from publish_service.app import MIGRATIONS
from tests.publish.harness import Harness, make_image, make_video, new_transport_key
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import RunningSandbox


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("publish-media")


@pytest.fixture(scope="session")
def video_3s(media_dir: Path) -> Path:
    return make_video(media_dir / "3s.mp4")


@pytest.fixture(scope="session")
def image_jpeg(media_dir: Path) -> Path:
    return make_image(media_dir / "photo.jpg")


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(
        data_dir=str(tmp_path / "sandbox-data"),
        pull_allow_http=True,  # the local S3 speaks http on an IP address
        allow_ip_prefixes=True,
        processing_min_s=0.5,
        moderation_delay_s=1.0,
    )


@pytest.fixture
async def harness(
    stack: Any, database_url: str, topic_prefix: str, s3_bucket: str, sandbox: RunningSandbox
) -> AsyncIterator[Harness]:
    tiktok_app = await sandbox.control.create_app(
        verified_url_prefixes=[f"{stack.s3_endpoint_url}/{s3_bucket}/"],
    )
    await sandbox.control.create_creator("alice", nickname="Alice")
    h = Harness(
        stack=stack,
        database_url=database_url,
        topic_prefix=topic_prefix,
        bucket=s3_bucket,
        sandbox=sandbox,
        tiktok_app=tiktok_app,
        transport_key=new_transport_key(),
    )
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def publish_pool(database_url: str) -> AsyncIterator[Any]:
    """A pool on a fresh database holding publish_service's schema ``publish`` (its migrations)."""
    async with create_pool(database_url, min_size=1, max_size=3) as pool:
        await apply_migrations(pool, "publish", MIGRATIONS)
        yield pool
