"""The header reader of publish_service's media adapter against real S3: what the probe gets, and in
how many GETs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.s3 import ObjectStore
from publish_service.adapters.media import READ_AHEAD, MediaSource
from publish_service.domain.media import Container, probe_video
from tests.conftest import object_store
from tests.publish.harness import make_video

pytestmark = pytest.mark.stack


@pytest.fixture
async def store(stack: Any) -> Any:
    async with object_store(stack) as store:
        yield store


def counting(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the ranges ``store.read_range`` is asked for."""
    ranges: list[tuple[int, int]] = []
    original = store.read_range

    async def read_range(bucket: str, key: str, start: int, end_inclusive: int) -> bytes:
        ranges.append((start, end_inclusive))
        return await original(bucket, key, start, end_inclusive)

    monkeypatch.setattr(store, "read_range", read_range)
    return ranges


async def test_an_mp4_is_probed_in_two_gets(
    store: ObjectStore, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg writes moov at the end: one GET for the boxes at the start, one for moov."""
    video = make_video(tmp_path / "v.mp4", seconds=12)
    data = video.read_bytes()
    assert len(data) > 2 * READ_AHEAD  # moov is out of the first GET's reach
    await store.put_bytes(s3_bucket, "v.mp4", data, content_type="video/mp4")
    ranges = counting(store, monkeypatch)
    media = MediaSource(store, public_base_url=None, presign_ttl_s=60)

    info = await probe_video(media.reader(s3_bucket, "v.mp4", len(data)), len(data))

    assert info.container is Container.mp4
    assert info.duration_s == pytest.approx(12.0, abs=0.1)
    assert len(ranges) == 2, ranges
    assert ranges[0] == (0, min(len(data), READ_AHEAD) - 1)


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 12), (5, 100), (READ_AHEAD - 3, 10), (70_000, 1), (150_000, 300_000), (199_990, 50), (200_000, 5)],
)
async def test_reads_are_the_bytes_asked_for(
    store: ObjectStore, s3_bucket: str, offset: int, length: int
) -> None:
    """Served from the read-ahead or not, each read is exactly the object's bytes there (clipped)."""
    data = bytes(range(256)) * 800  # 204,800 bytes
    await store.put_bytes(s3_bucket, "blob", data)
    read = MediaSource(store, public_base_url=None, presign_ttl_s=60).reader(s3_bucket, "blob", len(data))
    assert await read(0, 16) == data[:16]  # fills the read-ahead first
    assert await read(offset, length) == data[offset : offset + length]
